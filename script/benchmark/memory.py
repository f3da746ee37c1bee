"""Memory (PSS) of each running service of the stack, whoever started it.

``stack.status_rows`` knows the services this checkout started (its pid files). A benchmark
that reuses services started from another checkout or state directory finds them by what they
serve instead: the process listening on the service's port, and for Airflow's components
without a port, the process running ``airflow <component>``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from script.procs import memory_kb, trees_cpu
from script.services import ALL, STACK, Service

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on TCP ``port``, from /proc (None if none is seen)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            for fd in fd_dir.iterdir():
                if os.readlink(fd) in inodes:
                    return int(fd_dir.parent.name)
        except OSError:
            continue
    return None


def airflow_component_pid(component: str) -> int | None:
    """The pid of the topmost process running ``.../airflow <component>``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 3 and argv[1].endswith(b"/airflow") and argv[2] == component.encode():
            found.append(int(cmdline.parent.name))
    return min(found) if found else None


def service_pids(services: list[Service] = STACK) -> dict[str, int]:
    """The pid of each process of ``services`` that runs now, by its name in `status`: from
    this checkout's pid files, else found by what it serves."""
    out: dict[str, int] = {}
    for service in services:
        for process in service.processes():
            pid = process.pid
            if not pid and process.port:
                pid = listener_pid(process.port)
            elif not pid and process.name.startswith("airflow-"):  # no port of their own
                pid = airflow_component_pid(process.name.removeprefix("airflow-"))
            if pid:
                out[process.name] = pid
    return out


def service_pss_mb() -> dict[str, float]:
    """PSS in MB of each service process (tree) that runs now; missing ones are left out."""
    return {name: memory_kb(pid)[0] / 1024 for name, pid in service_pids().items()}


class CpuMeter:
    """CPU seconds each running service (the on-demand ones included) and each ``extra``
    process uses from the meter's start to its last ``sample``, each whole process tree counted.

    Each process is followed on its own: one that ends between two samples keeps what it had
    used at the last one (a Spark Python worker that exits, an Airflow task), where a tree's
    total would lose all of it; one that starts after the first sample counts from zero.
    """

    def __init__(self, extra: dict[str, int] | None = None) -> None:
        self._roots = {**service_pids(ALL), **(extra or {})}
        self._first: dict[int, float] = {}
        self._last: dict[int, tuple[str, float]] = {}
        self.sample(first=True)

    def sample(self, first: bool = False) -> None:
        for name, tree in trees_cpu(self._roots).items():
            for pid, used in tree.items():
                if first:
                    self._first[pid] = used
                self._last[pid] = (name, used)

    def used(self) -> dict[str, float]:
        """Seconds per name, after a last sample."""
        self.sample()
        out = dict.fromkeys(self._roots, 0.0)
        for pid, (name, used) in self._last.items():
            out[name] += used - self._first.get(pid, 0.0)
        return out


def idle_cpu(seconds: float) -> dict[str, float]:
    """Each running service's share of one core (%) over ``seconds``, its whole tree counted;
    the stream job and the pipeline page (on-demand services) included."""
    meter = CpuMeter()
    began = time.monotonic()
    while time.monotonic() - began < seconds:  # the measurement's span
        time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - began))))
        meter.sample()
    span = time.monotonic() - began
    return {name: 100 * used / span for name, used in meter.used().items()}
