"""Keep a long-running job up: restart it when it fails, stop it cleanly when asked.

    ./run.sh supervise --state RUN/spark-stream.supervisor.json --term-leader -- spark-submit ...

The job's exit status says what to do (the stream job's contract, see spark_stream.py):

- 0: it stopped because it was asked to (SIGTERM/SIGINT): the supervisor exits 0.
- 2: a configuration problem a restart cannot fix (a bad setting, missing connector jars,
  schema drift): the supervisor exits 2 without restarting, so the failure is seen.
- anything else (1, a JVM crash, killed by a signal): transient, restarted after a backoff of
  1 s doubling to 10 s, back to 1 s once a run has stayed up for 60 s.

The job runs in its own process group; SIGTERM or SIGINT to the supervisor is passed on as
SIGTERM to that group (with ``--term-leader``, to the job's own process alone, as ``docker stop``
signals a container's first process: the stream job's JVM stops its children itself, and a
signal to them could kill one mid-write), the supervisor waits up to 40 s (the job promises to
stop within 30 s), then SIGKILLs the group, and exits without restarting. Each start, exit and
restart is logged to the supervisor's stderr (the job's log under the local stack); the
restart count, the last exit status and its time are kept in the ``--state`` JSON file for
`./run.sh status`.

The supervisor adopts the job's orphans (a child subreaper, as ``docker run --init``'s tini):
it reaps them, and before a restart it kills and reaps whatever the job left behind, so that
the next start finds no process, not even a zombie, of the last one.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from script.procs import pid_alive, proc_stats, started_at

log = logging.getLogger("supervisor")

EXIT_STOPPED = 0  # the job stopped on request
EXIT_CONFIG = 2  # the job cannot run as configured: restarting will not help
FIRST_BACKOFF = 1.0
MAX_BACKOFF = 10.0
STABLE_AFTER = 60.0  # a run this long resets the backoff
STOP_TIMEOUT = 40.0  # SIGTERM, then SIGKILL after this long
LEFTOVER_TIMEOUT = 10.0  # a stopped job's leftover processes: reaped within this long
# How long the supervisor sleeps between looks at a running job: a signal (stop, an orphan's
# exit) and the job's exit wake it at once where Linux's pidfd and a signal wake-up fd exist.
WATCH_SECONDS = 30.0
POLL_SECONDS = 0.5  # elsewhere, where nothing wakes it
PR_SET_CHILD_SUBREAPER = 36  # prctl(2)


@dataclass
class State:
    """What `./run.sh status` shows about a supervised job; written as JSON after each change."""

    supervisor_pid: int
    started_at: float
    job_pid: int | None = None
    restarts: int = 0
    restart_exit: int | None = None  # the exit status that caused the last restart
    restart_at: float | None = None  # when that restart happened (epoch seconds)
    last_exit: int | None = None  # the job's latest exit status; -N: killed by signal N
    last_exit_at: float | None = None
    finished: bool = False  # the supervisor has exited

    def save(self, path: Path) -> None:
        """Replace ``path`` at once, so a reader never sees half a file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps(asdict(self)))
        partial.replace(path)


def read_state(path: Path) -> State | None:
    """The state a supervisor wrote to ``path``; None when there is none (or it is unreadable)."""
    try:
        return State(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def orphaned_job(path: Path) -> int | None:
    """The job of a supervisor that died without stopping it (SIGKILLed from outside, say), from
    the supervisor's last state in ``path``: its pid if that process still runs and is the one
    the supervisor started (a session leader started after it, not a pid used again since)."""
    state = read_state(path)
    if state is None or state.finished or not state.job_pid or pid_alive(state.supervisor_pid):
        return None
    pid = state.job_pid
    try:
        leader = os.getsid(pid) == pid  # the supervisor starts each job in a session of its own
    except OSError:
        return None
    started = started_at(pid)
    return pid if leader and started is not None and started >= state.started_at - 1 else None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit {code}"


def describe(name: str, state: State) -> str:
    """One status line, e.g. ``spark-stream restarts 2 (last exit 1 at 12:03:04)``."""
    line = f"{name} restarts {state.restarts}"
    if state.restart_exit is not None and state.restart_at is not None:
        line += f" (last {describe_exit(state.restart_exit)} at {_clock(state.restart_at)})"
    if state.finished:
        line += "; supervisor ended"
        if state.last_exit is not None and state.last_exit_at is not None:
            line += f" after job {describe_exit(state.last_exit)} at {_clock(state.last_exit_at)}"
        if state.last_exit == EXIT_CONFIG:
            line += ": a configuration problem, not restarted (see the log)"
    return line


def _clock(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


def is_transient(code: int) -> bool:
    """True when a restart may help: any exit but a requested stop or a configuration problem."""
    return code not in (EXIT_STOPPED, EXIT_CONFIG)


def next_backoff(previous: float | None, uptime: float) -> float:
    """Seconds to wait before the next start, given the last wait and how long the run lasted."""
    if previous is None or uptime >= STABLE_AFTER:
        return FIRST_BACKOFF
    return min(previous * 2, MAX_BACKOFF)


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone already


def become_subreaper() -> bool:
    """Adopt the job's orphans (Linux): a process whose parent dies becomes the supervisor's
    child, not PID 1's, so the supervisor can reap it. Left to PID 1, a SIGKILLed postmaster
    stayed a zombie until PID 1 reaped it, and the restarted PostgreSQL refused to start: "lock
    file postmaster.pid already exists" (a container whose PID 1 reaps nothing: forever)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children() -> dict[int, str]:
    """This process's children, alive or zombie: pid -> state letter (R, S, Z, ...)."""
    me = os.getpid()
    return {pid: fields[0] for pid, fields in proc_stats() if int(fields[1]) == me}


def reap_zombies(spare: int | None = None) -> None:
    """Reap the adopted children that have exited (never ``spare``: the job, which its
    ``Popen`` reaps)."""
    for pid, state in children().items():
        if state == "Z" and pid != spare:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def reap_leftovers(timeout: float = LEFTOVER_TIMEOUT) -> int:
    """After the job has exited: SIGKILL and reap what it left (processes of its own sessions,
    e.g. PostgreSQL's backends), so that none outlives it and the next start finds no zombie
    holding its lock file or port; how many there were."""
    deadline = time.monotonic() + timeout
    left = 0
    while (alive := children()) and time.monotonic() < deadline:
        left = max(left, len(alive))
        for pid, state in alive.items():
            if state != "Z":
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        reap_zombies()
        time.sleep(0.05)
    return left


class Supervisor:
    """Runs ``command`` until it stops on request, fails for good, or the supervisor is stopped."""

    def __init__(
        self,
        command: list[str],
        state_path: Path,
        stop_timeout: float = STOP_TIMEOUT,
        term_leader: bool = False,
    ) -> None:
        self.command = command
        self.state_path = state_path
        self.stop_timeout = stop_timeout
        self.term_leader = term_leader  # SIGTERM to the job's own process, not its group
        self.wake_fd: int | None = None  # signal_wake_up()'s: signals end the supervisor's sleep
        self.stopping = False  # set by the signal handler, so nothing it touches can deadlock
        self.child_exited = False  # SIGCHLD: the job or an adopted orphan exited
        self.state = State(supervisor_pid=os.getpid(), started_at=time.time())

    def request_stop(self, signum: int, _frame: object = None) -> None:
        if not self.stopping:
            log.info("%s: stopping the job, no restart", signal.Signals(signum).name)
        self.stopping = True

    def note_child_exit(self, _signum: int, _frame: object = None) -> None:
        self.child_exited = True

    def run(self) -> int:
        """Supervise until done; return the supervisor's exit status."""
        self.state.save(self.state_path)
        backoff: float | None = None
        try:
            while True:
                started = time.monotonic()
                code = self._run_once()
                uptime = time.monotonic() - started
                self.state.job_pid = None
                self.state.last_exit, self.state.last_exit_at = code, time.time()
                self.state.save(self.state_path)
                if self.stopping:
                    log.info("job stopped (%s)", describe_exit(code))
                    return EXIT_STOPPED if code in (EXIT_STOPPED, -signal.SIGTERM) else 1
                if code == EXIT_STOPPED:
                    log.info("job exited 0 after %.0f s: done, not restarting", uptime)
                    return EXIT_STOPPED
                if code == EXIT_CONFIG:
                    log.error(
                        "job exited 2 after %.0f s: a configuration problem that a restart "
                        "cannot fix; not restarting (the job's reason is above)",
                        uptime,
                    )
                    return EXIT_CONFIG
                backoff = next_backoff(backoff, uptime)
                log.warning(
                    "job %s after %.0f s: restarting in %.0f s",
                    describe_exit(code),
                    uptime,
                    backoff,
                )
                if self._sleep(backoff):
                    log.info("stopped while waiting to restart")
                    return EXIT_STOPPED
                self.state.restarts += 1
                self.state.restart_exit, self.state.restart_at = code, time.time()
                self.state.save(self.state_path)
                log.warning("restart %d (last %s)", self.state.restarts, describe_exit(code))
        finally:
            self.state.finished = True
            self.state.save(self.state_path)

    def _run_once(self) -> int:
        """Start the job in its own process group, wait for it; stop it when asked to."""
        job = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, start_new_session=True)
        self.state.job_pid = job.pid
        self.state.save(self.state_path)
        log.info("started %s (pid %d)", Path(self.command[0]).name, job.pid)
        exits = ExitWatch(job, self.wake_fd)
        try:
            while True:
                code = exits.wait(WATCH_SECONDS if exits.woken_by_signals else POLL_SECONDS)
                if code is not None:
                    return code
                if self.child_exited:  # an orphan the supervisor adopted: no zombie kept
                    self.child_exited = False
                    reap_zombies(spare=job.pid)
                if self.stopping:
                    return self._stop(job)
        finally:
            exits.close()
            # Whatever the job left behind in its group (e.g. the PySpark driver after a JVM
            # crash) or adopted by the supervisor must not outlive it: the next start would find
            # the port or files held.
            _signal_group(job.pid, signal.SIGKILL)
            if job.returncode is not None and (left := reap_leftovers()):
                log.info("reaped %d process(es) the job left behind", left)

    def _sleep(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless a stop is requested first; True when one was."""
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
        return self.stopping

    def _stop(self, job: subprocess.Popen) -> int:
        if self.term_leader:
            job.send_signal(signal.SIGTERM)  # a no-op once it has exited
        else:
            _signal_group(job.pid, signal.SIGTERM)
        try:
            return job.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            log.warning("job still running %.0f s after SIGTERM: SIGKILL", self.stop_timeout)
            _signal_group(job.pid, signal.SIGKILL)
            return job.wait()


class ExitWatch:
    """Wait for a child to exit while asleep. ``Popen.wait(timeout)`` polls every 50 ms: each
    idle supervisor woke 20 times a second, 0.07 % of a core, a dozen of them in the stack.
    Linux's pidfd becomes readable when the child exits; elsewhere, Popen's polling. With
    ``wake_fd`` (the read end of `signal.set_wakeup_fd`'s pipe), a signal ends the wait too."""

    def __init__(self, job: subprocess.Popen, wake_fd: int | None = None) -> None:
        self.job = job
        self.wake_fd = wake_fd
        try:
            self.fd: int | None = os.pidfd_open(job.pid)
        except (AttributeError, OSError):
            self.fd = None

    @property
    def woken_by_signals(self) -> bool:
        return self.fd is not None and self.wake_fd is not None

    def wait(self, timeout: float) -> int | None:
        """The child's exit status, or None if it still runs after ``timeout`` seconds (or a
        signal came first)."""
        if self.fd is None:
            try:
                return self.job.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None
        fds = [self.fd] if self.wake_fd is None else [self.fd, self.wake_fd]
        ready, _, _ = select.select(fds, [], [], timeout)
        if self.wake_fd in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self.wake_fd, 512):
                    pass
        return self.job.poll()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def signal_wake_up() -> int:
    """A pipe each signal writes a byte to (`signal.set_wakeup_fd`); its read end, which a
    sleeping supervisor watches beside the job's pidfd."""
    read_end, write_end = os.pipe()
    for fd in (read_end, write_end):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    return read_end


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="./run.sh supervise",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--state", type=Path, required=True, help="JSON file for the status")
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=STOP_TIMEOUT,
        help=f"seconds from SIGTERM to SIGKILL when stopping the job (default {STOP_TIMEOUT:.0f})",
    )
    parser.add_argument(
        "--term-leader",
        action="store_true",
        help="on a stop, SIGTERM the job's own process only, not its whole group (the rest of "
        "the group is killed once it has exited)",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the job's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command to supervise (put it after --)")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s supervisor: %(message)s",
        stream=sys.stderr,
    )
    supervisor = Supervisor(command, args.state, args.stop_timeout, args.term_leader)
    supervisor.wake_fd = signal_wake_up()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, supervisor.request_stop)
    if become_subreaper():
        signal.signal(signal.SIGCHLD, supervisor.note_child_exit)
    return supervisor.run()


if __name__ == "__main__":  # `python -m script.supervise`: how the stack starts its services
    sys.exit(main(sys.argv[1:]))
