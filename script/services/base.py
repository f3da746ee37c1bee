"""What every service of the local stack is: a process (or a few) that starts, answers, stops.

A service is one small class in its own module (see `script/services/__init__.py` for the
registry). The stack (`script/stack.py`) only ever calls the methods below, so it names no
service: a new service is a new module here plus one line in the registry.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

from pipeline import config
from script import supervise
from script.layout import CONF, LOGS, STACK_CONF, STATE, StackError, say
from script.procs import pid_alive, pid_file, read_pid, stop_tree, supervisor_state
from script.supervise import STOP_TIMEOUT


@dataclass(frozen=True)
class Process:
    """One row of `./run.sh status`: a process of a service, its port and its log."""

    name: str
    pid: int | None
    port: int | None
    log: Path


class Service:
    """One service: override `start` and `probe`; the rest has defaults that fit most.

    The defaults assume one process whose pid the stack keeps in `.stack/run/NAME.pid` (what
    `procs.spawn(NAME, ...)` writes) and whose output goes to `.stack/logs/NAME.log`.
    """

    name: str = ""
    # The port its readiness and `status` refer to, checked to be free before a start (a
    # property where a setting chooses it), and the address it listens on.
    port: int | None = None
    host: str = "127.0.0.1"
    timeout: float = 60  # seconds from start to ready before the start fails
    pid_while_starting = True  # False: no pid until it is ready (pg_ctl forks, then writes it)

    @property
    def log(self) -> Path:
        """The log to read when it fails."""
        return LOGS / f"{self.name}.log"

    @property
    def logs(self) -> str:
        """Where its logs are, as told when it starts."""
        return str(self.log.relative_to(STATE.parent))

    def start(self) -> None:
        """Start its process(es) in the background; return without waiting for readiness."""
        raise NotImplementedError

    def probe(self) -> str | None:
        """None when it is ready for the pipeline, else what is still missing (shown)."""
        raise NotImplementedError

    def download(self) -> Path | None:
        """Resolve what it runs from (jars) once, before any service starts; where it is."""
        return None

    def share_state(self) -> None:
        """On every `up`, before `.stack/` is made private (`layout.private_state`): what a
        service that runs as another user needs to reach in it (idempotent)."""

    def wanted_with_stack(self) -> bool:
        """An on-demand service: True when `./run.sh up` of the whole stack starts it too."""
        return False

    def set_up(self) -> None:
        """Once it is ready, on every `up`: idempotent (e.g. the pipeline's topic)."""

    def pid(self) -> int | None:
        """A live pid of it, None when it is not running."""
        return read_pid(self.name)

    def main_pid(self) -> int | None:
        """The service's own process, the one its supervisor started (``pid`` is the
        supervisor's); None while the supervisor is between two starts. A process started
        before services had supervisors is its own."""
        state = supervise.read_state(supervisor_state(self.name))
        if state is None:
            return self.pid()
        if state.finished or state.job_pid is None:
            return None
        return state.job_pid if pid_alive(state.job_pid) else None

    def complete(self) -> bool:
        """False when some of its processes are missing: `start` then starts those only."""
        return True

    def stop(self) -> None:
        pid = self.pid()
        if pid:  # its supervisor, which stops the service and does not restart it
            stop_tree(self.name, pid, timeout=STOP_TIMEOUT + 10, leader_only=True)
        else:  # a supervisor killed from outside leaves its service running, holding its port
            orphan = supervise.orphaned_job(supervisor_state(self.name))
            if orphan:  # as its supervisor would: SIGTERM to it, SIGKILL to what is left
                say(f"  {self.name}: its supervisor is gone; stopping its process {orphan}")
                stop_tree(self.name, orphan, timeout=STOP_TIMEOUT, leader_only=True)
        pid_file(self.name).unlink(missing_ok=True)

    def processes(self) -> list[Process]:
        """Its rows in `./run.sh status`."""
        return [Process(self.name, self.pid(), self.port, self.log)]

    def note(self) -> str | None:
        """A line under the status table (e.g. a supervisor's restarts), None for none."""
        return None


# Every JVM of the stack wakes some of its own threads on a clock, busy or not, five JVMs on
# two cores:
# - HotSpot's watcher thread samples its performance counters (what `jcmd PID
#   PerfCounter.print` and jstat read) every 50 ms; once a second is plenty for counters nobody
#   watches live (an idle JVM's "VM Periodic Task" thread: 0.05 % of a core at 50 ms, 0.00 % at
#   1,000 ms, /proc over 40 s);
# - the monitor deflation thread looks for idle locks to free every 250 ms, and G1's service
#   thread samples the remembered sets every 300 ms: every 2 s is enough for both (a sleeping
#   Java 17 JVM: 10.7 wake-ups a second, 4.9 with these; Java 25 has no G1 flag of that name,
#   hence IgnoreUnrecognizedVMOptions).
QUIET_JVM_OPTIONS = (
    "-XX:PerfDataSamplingInterval=1000",
    "-XX:+IgnoreUnrecognizedVMOptions",
    "-XX:+UnlockDiagnosticVMOptions",
    "-XX:AsyncDeflationInterval=2000",
    "-XX:G1ConcRefinementServiceIntervalMillis=2000",
)
# For a JVM on no path a user's record takes (ZooKeeper, the schema registry): its methods are
# compiled once, by C1, and never profiled and compiled again by C2. An idle stack's compilers
# kept working for minutes after a run in every JVM (C2 most); these two serve a request now
# and then, where C2's faster code gains nothing.
NO_C2_JVM_OPTIONS = ("-XX:TieredStopAtLevel=1",)


def java() -> str:
    home = config.load().stack.java_home
    exe = Path(home, "bin", "java") if home else shutil.which("java")
    if not exe or not Path(exe).exists():
        raise StackError("Java 17 is not installed (java not on PATH, JAVA_HOME unset)")
    return str(exe)


def render(template: str, out: str | None = None, **values: object) -> Path:
    """`stack/TEMPLATE` with `{state}` and each `{key}` of ``values`` filled in, written to
    `.stack/conf/OUT` (default: TEMPLATE)."""
    text = (STACK_CONF / template).read_text().replace("{state}", str(STATE))
    for key, value in values.items():
        text = text.replace(f"{{{key}}}", str(value))
    CONF.mkdir(parents=True, exist_ok=True)
    path = CONF / (out or template)
    path.write_text(text)
    return path


def address(host: str) -> str:
    """The IPv4 address a node binds for ``host`` (localhost: 127.0.0.1)."""
    try:
        return socket.gethostbyname(host)
    except OSError as exc:
        raise StackError(f"host {host!r} does not resolve ({exc})") from exc
