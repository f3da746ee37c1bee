"""`python -m script.monitor [--host ADDRESS]`: serve the pipeline page on MONITOR_PORT.

The local stack runs it on 127.0.0.1; a container (Compose) binds every address of its own
network namespace, and Compose publishes the port on the host's loopback.
"""

from __future__ import annotations

import argparse
import sys

from script.monitor import app

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m script.monitor", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sys.exit(app.main(parser.parse_args().host))
