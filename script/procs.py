"""Processes of the local stack: pid files, spawning, process trees, stopping, memory."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from script.layout import LOGS, REPO, RUN, UMASK, say

# --------------------------------------------------------------------------- processes


def pid_file(name: str) -> Path:
    return RUN / f"{name}.pid"


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (field 22 of /proc/PID/stat), None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def started_at(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch; None if it is gone."""
    ticks = start_time(pid)
    if ticks is None:
        return None
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1]) + int(ticks) / os.sysconf("SC_CLK_TCK")
    return None


def write_pid(name: str, pid: int) -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    pid_file(name).write_text(f"{pid} {start_time(pid)}")


def read_pid(name: str) -> int | None:
    """The live pid in NAME's pid file; None when it is gone or the pid now names another
    process (pid files outlive a reboot)."""
    path = pid_file(name)
    if not path.exists():
        return None
    try:
        pid_text, _, started = path.read_text().strip().partition(" ")
        pid = int(pid_text)
    except ValueError:
        return None
    if not pid_alive(pid) or (started and start_time(pid) != started):
        return None
    return pid


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # not ours: the stack only manages its own user's processes
    try:
        zombie = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")
        # A zombie leader whose other threads still exit holds its files (ports) a moment longer.
        return not zombie or len(os.listdir(f"/proc/{pid}/task")) > 1
    except OSError:
        return False


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def supervisor_state(name: str) -> Path:
    """Where the supervisor of NAME keeps its state (restarts, the job's pid)."""
    return RUN / f"{name}.supervisor.json"


def spawn(
    name: str,
    cmd: list[str],
    env: dict[str, str] | None = None,
    supervisor_options: tuple[str, ...] = (),
) -> int:
    """Start ``cmd`` under a supervisor (`script/supervise.py`, with ``supervisor_options``) in
    its own session, output to .stack/logs/NAME.log, the supervisor's pid to .stack/run/NAME.pid:
    a service that crashes or is killed is started again, as the stream job is (its state:
    ``supervisor_state(NAME)``)."""
    supervised = [
        sys.executable,
        "-m",
        "script.supervise",
        "--state",
        str(supervisor_state(name)),
        *supervisor_options,
        "--",
        *cmd,
    ]
    LOGS.mkdir(parents=True, exist_ok=True)
    RUN.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{name}.log").open("ab")
    log.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        supervised,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
        start_new_session=True,
        umask=UMASK,  # what it writes (data, logs) is the stack owner's alone
    )
    write_pid(name, proc.pid)
    return proc.pid


def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """Each process's pid and the fields of its /proc/PID/stat after the name: the state
    letter first (R, S, Z, ...), then the parent's pid, ..."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        yield int(stat.parent.name), fields


def trees_cpu(roots: dict[str, int]) -> dict[str, dict[int, float]]:
    """For each named root pid: the CPU seconds (user plus system, its own only) of each live
    process of its tree, by pid; one read of /proc for all of them."""
    children: dict[int, list[int]] = {}
    own: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
        own[pid] = (int(fields[11]) + int(fields[12])) / tick
    out: dict[str, dict[int, float]] = {}
    for name, root in roots.items():
        tree, todo = {}, [root]
        while todo:
            pid = todo.pop()
            if pid in own:
                tree[pid] = own[pid]
            todo.extend(children.get(pid, []))
        out[name] = tree
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for pid, fields in proc_stats():
        children.setdefault(int(fields[1]), []).append(pid)
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def stop_tree(name: str, pid: int, timeout: float = 30, leader_only: bool = False) -> None:
    """SIGTERM the process tree of ``pid``, then SIGKILL whatever is left after ``timeout``.

    ``leader_only``: SIGTERM ``pid`` alone, a supervisor that stops its children itself.
    """
    tree = process_tree(pid)
    for p in tree[:1] if leader_only else tree:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(pid_alive(p) for p in tree):
        time.sleep(0.3)
    left = [p for p in tree if pid_alive(p)]
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        say(f"  {name}: killed {len(left)} process(es) that ignored SIGTERM for {timeout:.0f}s")


def memory_kb(pid: int) -> tuple[int, int]:
    """(PSS, RSS) in KiB summed over the process tree of ``pid``."""
    pss = rss = 0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except (OSError, ValueError):
            continue
    return pss, rss


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    path.chmod(0o600)


def apt_install(package: str, why: str) -> bool:
    """Install Debian's ``package`` with apt-get when this runs as root on Debian (as the stack
    does for PostgreSQL); False when it cannot, for the caller to name the fix."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    say(f"installing {package} from Debian (apt-get) {why} ...")
    subprocess.run(["apt-get", "update", "-qq"], check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", package],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return True
