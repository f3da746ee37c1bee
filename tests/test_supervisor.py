"""The stream job's supervisor restarts what failed, leaves what is done, and stops on request.

Real processes throughout: ``python -m script supervise`` runs a small Python stand-in for the
job that writes what happened to files, since what is under test is the supervisor, not Spark.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from script import supervise
from script.procs import pid_alive

REPO = Path(__file__).resolve().parents[1]

# The stand-in job: counts its runs in RUNS, writes its pid to PIDFILE, then does what ACTIONS
# (one per run, the last one repeating) says: exit N, "kill" itself, "leave" a grandchild
# behind and exit 1, "orphan": start a child in a session of its own (as PostgreSQL's backends
# are) and SIGKILL itself, "look" whether that child is still there (alive or a zombie) and exit
# 0, "wait" for SIGTERM (and record it), "family": wait with a child in its group that records a
# SIGTERM of its own, or "ignore" SIGTERM.
CHILD = """
import signal, sys, time
from pathlib import Path
def stop(signum, frame):
    Path(sys.argv[1]).write_text(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
Path(sys.argv[1] + ".ready").write_text("")
while True:
    time.sleep(0.1)
"""
JOB = f"""
CHILD = {CHILD!r}
import os, signal, subprocess, sys, time
from pathlib import Path
runs_file, pid_file, actions = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")
runs = int(runs_file.read_text()) if runs_file.exists() else 0
runs_file.write_text(str(runs + 1))
action = actions[min(runs, len(actions) - 1)]
if action == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
if action == "leave":
    child = subprocess.Popen(["sleep", "300"])
    Path(sys.argv[2] + ".grandchild").write_text(str(child.pid))
    sys.exit(1)
if action == "orphan":
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    Path(sys.argv[2] + ".grandchild").write_text(str(child.pid))
    os.kill(os.getpid(), signal.SIGKILL)
if action == "look":
    stat = Path("/proc", Path(sys.argv[2] + ".grandchild").read_text(), "stat")
    fields = stat.read_text().split() if stat.exists() else []
    seen = " ".join(fields[1:3]) if fields[1:2] == ["(sleep)"] else "gone"
    Path(sys.argv[2] + ".seen").write_text(seen)
    sys.exit(0)
if action == "family":
    child = subprocess.Popen([sys.executable, "-c", CHILD, sys.argv[2] + ".child-signal"])
    Path(sys.argv[2] + ".grandchild").write_text(str(child.pid))
    while not Path(sys.argv[2] + ".child-signal.ready").exists():  # its handler is set
        time.sleep(0.01)
    action = "wait"
if action == "wait":
    def stop(signum, frame):
        Path(sys.argv[2] + ".signal").write_text(signal.Signals(signum).name)
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
if action == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if action in ("wait", "ignore"):
    pid_file.write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)
sys.exit(int(action))
"""


class Run:
    """One supervisor over the stand-in job, in ``tmp``."""

    def __init__(self, tmp: Path, actions: str, *options: str, state: Path | None = None) -> None:
        self.runs, self.pid_file = tmp / "runs", tmp / "job.pid"
        self.state = state or tmp / "state.json"
        self.log = tmp / "supervisor.log"
        job = [sys.executable, "-c", JOB, str(self.runs), str(self.pid_file), actions]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "script", "supervise", "--state", str(self.state), *options]
                + ["--", *job],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, timeout: float = 90) -> int:
        try:
            return self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)

    def job_pid(self, timeout: float = 60) -> int:
        """The pid of a job that waits (or ignores SIGTERM), once it has written it."""
        deadline = time.monotonic() + timeout
        while not self.pid_file.exists() or not self.pid_file.read_text():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "the job never started: " + self.log.read_text()
            time.sleep(0.1)
        return int(self.pid_file.read_text())

    def run_count(self) -> int:
        return int(self.runs.read_text())

    def final_state(self) -> supervise.State:
        state = supervise.read_state(self.state)
        assert state is not None, f"no state file at {self.state}"
        return state


def test_a_job_that_exits_1_is_restarted_and_each_restart_recorded(tmp_path: Path) -> None:
    run = Run(tmp_path, "1,1,0")
    assert run.wait() == 0, run.log.read_text()
    state = run.final_state()
    assert run.run_count() == 3
    assert (state.restarts, state.restart_exit, state.last_exit) == (2, 1, 0)
    assert state.finished and state.job_pid is None
    log = run.log.read_text()
    assert "restart 1 (last exit 1)" in log and "restart 2 (last exit 1)" in log, log


@pytest.mark.parametrize("code", [0, 2], ids=["stopped-on-request", "configuration-problem"])
def test_a_job_that_exits_0_or_2_is_not_restarted(tmp_path: Path, code: int) -> None:
    run = Run(tmp_path, str(code))
    assert run.wait() == code, run.log.read_text()
    state = run.final_state()
    assert run.run_count() == 1
    assert (state.restarts, state.last_exit, state.finished) == (0, code, True)


def test_a_killed_job_is_restarted_and_what_it_left_behind_is_killed(tmp_path: Path) -> None:
    run = Run(tmp_path, "leave,kill,0")
    assert run.wait() == 0, run.log.read_text()
    state = run.final_state()
    assert run.run_count() == 3
    assert (state.restarts, state.restart_exit) == (2, -signal.SIGKILL)
    grandchild = int(Path(f"{run.pid_file}.grandchild").read_text())
    assert not pid_alive(grandchild), "the first run's child outlived it"


def test_a_restart_finds_nothing_of_the_killed_run_not_even_a_zombie(tmp_path: Path) -> None:
    """A killed postmaster left to PID 1 stayed a zombie, and PostgreSQL's restart refused its
    lock file ("Is another postmaster (PID N) running"): the supervisor adopts and reaps."""
    run = Run(tmp_path, "orphan,look")
    assert run.wait() == 0, run.log.read_text()
    assert Path(f"{run.pid_file}.seen").read_text() == "gone"
    assert "reaped 1 process(es) the job left behind" in run.log.read_text()


def test_sigterm_stops_the_job_and_the_supervisor_without_a_restart(tmp_path: Path) -> None:
    run = Run(tmp_path, "wait")
    job = run.job_pid()
    run.process.send_signal(signal.SIGTERM)
    assert run.wait() == 0, run.log.read_text()
    assert Path(f"{run.pid_file}.signal").read_text() == "SIGTERM"
    assert not pid_alive(job)
    state = run.final_state()
    assert run.run_count() == 1
    assert (state.restarts, state.last_exit, state.finished) == (0, 0, True)


def test_sigint_stops_the_job_too(tmp_path: Path) -> None:
    run = Run(tmp_path, "wait")
    run.job_pid()
    run.process.send_signal(signal.SIGINT)
    assert run.wait() == 0, run.log.read_text()
    assert Path(f"{run.pid_file}.signal").read_text() == "SIGTERM"  # passed on as SIGTERM
    assert run.run_count() == 1


@pytest.mark.parametrize(
    ("options", "child_signal"),
    [((), "SIGTERM"), (("--term-leader",), None)],
    ids=["the-whole-group", "term-leader-the-job-alone"],
)
def test_a_stop_signals_the_jobs_group_or_with_term_leader_the_job_alone(
    tmp_path: Path, options: tuple[str, ...], child_signal: str | None
) -> None:
    run = Run(tmp_path, "family", *options)
    run.job_pid()
    child = int(Path(f"{run.pid_file}.grandchild").read_text())
    run.process.send_signal(signal.SIGTERM)
    assert run.wait() == 0, run.log.read_text()
    assert Path(f"{run.pid_file}.signal").read_text() == "SIGTERM"
    recorded = Path(f"{run.pid_file}.child-signal")
    assert (recorded.read_text() if recorded.exists() else None) == child_signal
    assert not pid_alive(child), "the job's child outlived it"


def test_a_job_that_ignores_sigterm_is_killed_after_the_stop_timeout(tmp_path: Path) -> None:
    run = Run(tmp_path, "ignore", "--stop-timeout", "1")
    job = run.job_pid()
    run.process.send_signal(signal.SIGTERM)
    assert run.wait() == 1, run.log.read_text()
    assert not pid_alive(job)
    state = run.final_state()
    assert (state.restarts, state.last_exit) == (0, -signal.SIGKILL)


def test_backoff_doubles_to_10_seconds_and_resets_after_a_stable_run() -> None:
    delays, previous = [], None
    for _ in range(7):
        previous = supervise.next_backoff(previous, uptime=5)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 10, 10, 10]
    assert supervise.next_backoff(10, uptime=supervise.STABLE_AFTER) == 1


def test_only_exits_other_than_0_and_2_are_transient() -> None:
    assert [c for c in (0, 1, 2, 3, 137, -9, -15) if supervise.is_transient(c)] == [
        1,
        3,
        137,
        -9,
        -15,
    ]


def test_status_shows_the_stream_jobs_restarts(tmp_path: Path) -> None:
    at = time.mktime((2024, 5, 6, 12, 3, 4, 0, 0, -1))
    state = supervise.State(supervisor_pid=1, started_at=at, restarts=2, restart_exit=1)
    state.restart_at = at
    state.save(tmp_path / "run" / "spark-stream.supervisor.json")
    result = subprocess.run(
        [sys.executable, "-m", "script", "status"],
        cwd=REPO,
        env={**os.environ, "STACK_STATE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "spark-stream restarts 2 (last exit 1 at 12:03:04)" in result.stdout.splitlines()


def test_a_finished_supervisor_says_why_it_did_not_restart() -> None:
    state = supervise.State(supervisor_pid=1, started_at=0, last_exit=2, finished=True)
    state.last_exit_at = time.mktime((2024, 5, 6, 8, 0, 0, 0, 0, -1))
    line = supervise.describe("spark-stream", state)
    assert line == (
        "spark-stream restarts 0; supervisor ended after job exit 2 at 08:00:00: "
        "a configuration problem, not restarted (see the log)"
    )


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_the_exit_watch_sleeps_until_the_job_exits_and_gives_its_status(pidfd: bool) -> None:
    job = subprocess.Popen([sys.executable, "-c", "import sys, time; time.sleep(1); sys.exit(3)"])
    exits = supervise.ExitWatch(job)
    if not pidfd:
        exits.close()  # as where Linux's pidfd is missing: Popen's own polling
    try:
        assert exits.wait(0.1) is None  # still running
        while (code := exits.wait(0.5)) is None:
            pass
        assert code == 3
    finally:
        exits.close()
        job.wait()


def test_a_signal_ends_the_exit_watchs_sleep_while_the_job_runs() -> None:
    """A supervisor sleeps up to WATCH_SECONDS between looks: a stop or an orphan's exit must
    wake it at once. The job outlives the signal; without the wake-up, the watch would sleep on
    until the job's exit and return its status."""
    previous_handler = signal.signal(signal.SIGUSR1, lambda *_: None)
    previous_fd = signal.set_wakeup_fd(-1)
    wake_fd = supervise.signal_wake_up()
    job = subprocess.Popen(["sleep", "60"])
    exits = supervise.ExitWatch(job, wake_fd)
    try:
        assert exits.woken_by_signals
        threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGUSR1)).start()
        assert exits.wait(120) is None  # woken by the signal, the job still running
        assert job.poll() is None
    finally:
        exits.close()
        job.kill()
        job.wait()
        signal.set_wakeup_fd(previous_fd)
        signal.signal(signal.SIGUSR1, previous_handler)


def test_down_stops_the_service_a_killed_supervisor_left_running(tmp_path: Path) -> None:
    """A supervisor SIGKILLed from outside cannot stop its service, which holds its port: the
    next `up` refused ("port taken"). `down` finds the service by the supervisor's last state
    and stops it as the supervisor would; a pid in that state that is no longer the service's
    (a process started since) is left alone."""
    from script.procs import supervisor_state
    from script.services.base import Service

    service = Service()
    service.name = f"test-orphan-{os.getpid()}"
    state = supervisor_state(service.name)
    run = Run(tmp_path, "wait", state=state)
    try:
        job = run.job_pid()
        run.process.kill()  # the supervisor only; its job runs on in a session of its own
        run.process.wait()
        assert pid_alive(job)
        assert supervise.orphaned_job(state) == job

        service.stop()
        assert Path(f"{run.pid_file}.signal").read_text() == "SIGTERM"
        assert not pid_alive(job)

        saved = supervise.read_state(state)
        assert saved is not None
        saved.job_pid = os.getpid()  # a pid used again: not the session leader it started
        saved.save(state)
        assert supervise.orphaned_job(state) is None
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
        left = run.pid_file.read_text() if run.pid_file.exists() else ""
        if left and pid_alive(int(left)):
            os.kill(int(left), signal.SIGKILL)
        state.unlink(missing_ok=True)
