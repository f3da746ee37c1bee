"""The local stack as a library: start, wait for, stop and list the services.

It knows services only through the `Service` interface (`script/services/base.py`) and the
registry (`script/services/__init__.py`): it names none of them. The tools built on it (the
command line, the pipeline runner, status, the benchmark) import it; it imports none of them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from pathlib import Path

from script.layout import (
    CONF,
    DATA,
    LOGS,
    REPO,
    RUN,
    STATE,
    StackError,
    keep_topology,
    private_state,
    say,
)
from script.procs import memory_kb, port_open
from script.services import ALL, ON_DEMAND, STACK, Service


def wait_ready(service: Service) -> None:
    """Poll the service's probe until it is ready; StackError with its log when it cannot be."""
    started = time.monotonic()
    last_reason, last_print = "", 0.0
    while True:
        reason = service.probe()
        if reason is None:
            say(f"  {service.name}: ready ({time.monotonic() - started:.0f}s)")
            return
        if service.pid_while_starting and service.pid() is None:
            raise StackError(_failure(service, "the process exited"))
        elapsed = time.monotonic() - started
        if elapsed > service.timeout:
            raise StackError(_failure(service, f"not ready after {service.timeout:.0f}s: {reason}"))
        if reason != last_reason or elapsed - last_print > 15:
            say(f"  {service.name}: waiting ({reason}) {elapsed:.0f}s")
            last_reason, last_print = reason, elapsed
        time.sleep(1)


def _failure(service: Service, why: str) -> str:
    port = f" on port {service.port}" if service.port else ""
    tail = ""
    if service.log.exists():
        lines = service.log.read_text(errors="replace").splitlines()[-12:]
        tail = "\n    " + "\n    ".join(lines)
    return f"{service.name}{port} failed: {why}. Log: {service.log}{tail}"


def _port_busy(service: Service) -> bool:
    return bool(service.port) and port_open(service.port, service.host)


def _port_taken(service: Service) -> str:
    return (
        f"{service.name}: port {service.port} is taken by another process on {service.host} (see "
        f"`ss -ltnp 'sport = :{service.port}'`); stop it or free the port. "
        f"Log: {service.log}"
    )


def start_service(service: Service) -> bool:
    """Start ``service`` unless it already runs, then set it up; True when this call started it."""
    started = _start_unless_running(service)
    service.set_up()
    return started


def _start_unless_running(service: Service) -> bool:
    if service.pid():
        if not service.complete():
            say(f"{service.name}: starting the parts that are not running")
            service.start()  # skips the live ones
        if service.probe() is None:
            say(f"{service.name}: already running (pid {service.pid()})")
            return False
        say(f"{service.name}: running, waiting until ready")
        wait_ready(service)
        return False
    if _port_busy(service):
        raise StackError(_port_taken(service))
    say(f"{service.name}: starting (log {service.logs})")
    service.start()
    wait_ready(service)
    return True


def stop_service(service: Service) -> None:
    pid = service.pid()
    if pid:
        say(f"{service.name}: stopping (pid {pid})")
    service.stop()


def up(names: Iterable[str] | None = None) -> list[str]:
    """Start the named services (default: the whole stack) in order; return those it started."""
    wanted = set(names or [s.name for s in STACK])
    unknown = wanted - {s.name for s in STACK}
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(sorted(unknown))}")
    started_at = time.monotonic()
    keep_topology()
    for service in ALL:  # grants first, so that a running service never loses its way
        service.share_state()
    private_state()
    for service in STACK:  # fail before any download when a port is taken
        if service.name in wanted and not service.pid() and _port_busy(service):
            raise StackError(_port_taken(service))
    downloads()
    started = [s.name for s in STACK if s.name in wanted and start_service(s)]
    if not names:  # the whole stack: with the on-demand services its runs rely on
        started += [s.name for s in ON_DEMAND if s.wanted_with_stack() and start_service(s)]
    say(f"stack up in {time.monotonic() - started_at:.0f}s; `./run.sh status` for details")
    return started


def downloads() -> dict[str, Path]:
    """What every service runs from (jars), resolved once into .stack/jars: name -> where."""
    found = {s.name: s.download() for s in ALL}
    return {name: path for name, path in found.items() if path}


def down(names: Iterable[str] | None = None) -> None:
    """Stop the named services (default: all): on-demand ones first, then the stack in reverse."""
    wanted = set(names or [s.name for s in ALL])
    for service in [*ON_DEMAND, *reversed(STACK)]:
        if service.name in wanted:
            stop_service(service)


def running() -> list[str]:
    """Names of the services that run now."""
    return [s.name for s in ALL if s.pid()]


def status_rows() -> list[dict[str, object]]:
    """One row per process of every service: state, pid, port, memory (PSS, RSS), log."""
    rows = []
    for service in ALL:
        for process in service.processes():
            pss, rss = memory_kb(process.pid) if process.pid else (0, 0)
            log = process.log
            rows.append(
                {
                    "service": process.name,
                    "state": "up" if process.pid else "down",
                    "pid": process.pid or "-",
                    "port": process.port or "-",
                    "pss_mb": pss // 1024,
                    "rss_mb": rss // 1024,
                    "log": str(log.relative_to(REPO)) if log.is_relative_to(REPO) else str(log),
                }
            )
    return rows


def notes() -> list[str]:
    """The services' lines under the status table (e.g. the stream job's restarts)."""
    return [note for note in (s.note() for s in ALL) if note]


def clean(everything: bool) -> None:
    """Stop everything and remove service data and logs (and downloads and venv: everything)."""
    down()
    targets = [DATA, LOGS, RUN, CONF] + ([STATE] if everything else [])
    for path in targets:
        if path.exists():
            try:
                shutil.rmtree(path)
            except OSError as exc:
                raise StackError(f"could not remove {path}: {exc}") from exc
    kept = " and downloads/venv" if everything else " (downloads and venv kept; --all removes them)"
    say(f"removed service data and logs{kept}")
