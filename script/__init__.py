"""Tooling of the local stack: `./run.sh` runs `python -m script`."""
