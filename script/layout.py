"""Where the local stack keeps things, its pinned versions, and how its tooling reports.

Everything the stack downloads or writes lives under `.stack/` (git-ignored; `STACK_STATE_DIR`,
read by `pipeline/config.py` like every setting, moves it): `venv/`, `jars/` (Maven downloads),
`data/` (service data), `logs/` (one log per service), `run/` (pid files), `conf/` (generated
config). Versions are pinned in `stack/versions.env`; static service config lives in `stack/`.
It holds users' names, emails and phones and the stack's passwords: it is its owner's alone
(`private_state`).
"""

from __future__ import annotations

import os
import stat
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
# ./run.sh's own log: what our modules log, such as the whole answer of a call a service refused
# (the terminal gets one sentence).
TOOL_LOG = LOGS / "run.sh.log"
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


# What the stack's processes create is their owner's alone: files 0600, directories 0700.
UMASK = 0o077


def private_state() -> None:
    """Make `.stack/` its owner's alone, from now on and for what is already there.

    Sets the umask of this process (and so of everything it spawns) to UMASK, and takes group
    and other access off the state dir, each directory in it and in `data/`, and everything in
    `logs/`, `run/` and `conf/` that this user owns (a service running as another user, such as
    Postgres when the stack runs as root, owns its own files and keeps them private itself). An
    access ACL granted on purpose (the postgres user's traverse right, see
    `script/services/postgres.py`) is kept.
    """
    os.umask(UMASK)
    STATE.mkdir(parents=True, exist_ok=True)
    paths = [STATE, *_children(STATE), *_children(DATA)]
    for top in (LOGS, RUN, CONF):
        if top.is_dir():
            paths += [
                Path(root, name) for root, dirs, files in os.walk(top) for name in dirs + files
            ]
    for path in paths:
        _owner_only(path)


def _children(path: Path) -> list[Path]:
    return [p for p in path.iterdir() if p.is_dir() and not p.is_symlink()] if path.is_dir() else []


def _owner_only(path: Path) -> None:
    try:
        info = path.lstat()
    except FileNotFoundError:
        return  # gone meanwhile (a rotated log)
    if info.st_uid != os.geteuid() or stat.S_ISLNK(info.st_mode) or not info.st_mode & 0o077:
        return
    mode = stat.S_IMODE(info.st_mode) & ~0o077
    if stat.S_ISDIR(info.st_mode) and has_acl(path):
        mode |= 0o010  # the group bits of a directory with an ACL are its mask: keep its x
    path.chmod(mode)


def has_acl(path: Path) -> bool:
    """True when ``path`` carries a POSIX access ACL (more than its mode bits)."""
    try:
        return "system.posix_acl_access" in os.listxattr(path, follow_symlinks=False)
    except OSError:
        return False  # a file system without extended attributes has no ACLs


def keep_topology() -> None:
    """Record the topology (STACK_TOPOLOGY) the stack's data is of, in
    `data/topology`; refuse to bring up another over it."""
    wanted = config.topology()
    record = config.topology_record()
    have = record.read_text().strip() if record.exists() else ""
    if not have and DATA.exists() and any(DATA.iterdir()):
        have = "single"  # data from before topologies were recorded
    if have and have != wanted:
        raise StackError(
            f"the stack's data is of the {have} topology, STACK_TOPOLOGY={wanted}: `./run.sh "
            f"down && ./run.sh clean` first (removes the data, keeps downloads), or give the "
            f"{wanted} topology a folder of its own with STACK_STATE_DIR"
        )
    DATA.mkdir(parents=True, exist_ok=True)
    record.write_text(wanted + "\n")
