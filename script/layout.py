"""Where the local stack keeps things, its pinned versions, and how its tooling reports.

Everything the stack downloads or writes lives under `.stack/` (git-ignored; `STACK_STATE_DIR`,
read by `pipeline/config.py` like every setting, moves it): `venv/`, `jars/` (Maven downloads),
`data/` (service data), `logs/` (one log per service), `run/` (pid files), `conf/` (generated
config). Versions are pinned in `stack/versions.env`; static service config lives in `stack/`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline import config

REPO = Path(__file__).resolve().parents[1]

STACK_CONF = REPO / "stack"
STATE = config.state_dir()
JARS = STATE / "jars"
DATA = STATE / "data"
LOGS = STATE / "logs"
RUN = STATE / "run"
CONF = STATE / "conf"
VENV_BIN = Path(sys.executable).parent


class StackError(RuntimeError):
    """A step of the stack failed; the message names the service, its port and its log."""


def say(message: str) -> None:
    print(f"[stack] {message}", flush=True)


def versions() -> dict[str, str]:
    """The pinned versions from stack/versions.env."""
    pairs = {}
    for line in (STACK_CONF / "versions.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs
