"""The nemesis: a seeded schedule of faults, each applied to one process of the stack, and the
time each took to recover (its service's readiness probe passing again)."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from script import stack, supervise
from script.procs import process_tree, supervisor_state
from script.services import ALL, Service

ACTIONS = ("kill", "pause", "restart")
GAP_SECONDS = (45.0, 120.0)  # between two faults
PAUSE_SECONDS = (5.0, 40.0)  # how long a SIGSTOP lasts
RECOVERY_BOUND = 600.0  # a fault not recovered after this long is reported so


@dataclass(frozen=True)
class Target:
    """One process of the stack the nemesis may hit, and the service it belongs to."""

    process: str
    service: Service

    @property
    def kind(self) -> str:
        """Nodes of one kind (the cluster topology's brokers, ...) are faulted one at a time."""
        return type(self.service).__name__


@dataclass
class Fault:
    """One fault of the timeline; times in seconds from the start of the run."""

    at: float
    process: str
    action: str
    pause_s: float = 0.0
    began: float | None = None
    ended: float | None = None  # the kill sent, the SIGCONT sent, the restart begun
    recovered_s: float | None = None  # from ``ended`` to the service ready again
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def targets() -> list[Target]:
    """Every process of every service that runs now (each Airflow component on its own)."""
    return [Target(p.name, s) for s in ALL if s.pid() for p in s.processes() if p.pid is not None]


def schedule(seed: int, seconds: float, count: int) -> list[tuple[float, int, str, float]]:
    """(at, target index, action, pause) for a run of ``seconds``: the same for the same seed."""
    rng = random.Random(seed)
    plan, at = [], 0.0
    while True:
        at += rng.uniform(*GAP_SECONDS)
        if at >= seconds:
            return plan
        pause = round(rng.uniform(*PAUSE_SECONDS), 1)
        plan.append((round(at, 1), rng.randrange(count), rng.choice(ACTIONS), pause))


def job_pid(process: str) -> int | None:
    """The pid its supervisor started (not the supervisor's); None between two starts."""
    state = supervise.read_state(supervisor_state(process))
    return state.job_pid if state and not state.finished and state.job_pid else None


def _signal(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass


class Nemesis:
    """Applies the schedule from a thread of its own; each fault in a thread of its own, so
    that a service may die while another is still coming back."""

    def __init__(self, seed: int, seconds: float, log: Any) -> None:
        self.pool = targets()
        self.plan = schedule(seed, seconds, len(self.pool))
        self.faults: list[Fault] = []
        self.log = log
        self._busy: set[str] = set()  # kinds with a fault under way
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def now(self) -> float:
        return round(time.monotonic() - self._started, 1)

    def run(self, started: float) -> None:
        self._started = started
        for at, index, action, pause in self.plan:
            if self._stop.wait(max(0.0, at - self.now())):
                return
            target = self._free(index)
            fault = Fault(at, target.process if target else "-", action, pause)
            self.faults.append(fault)
            if target is None:
                fault.note = "every kind busy: skipped"
                continue
            thread = threading.Thread(target=self._apply, args=(target, fault), daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """No new fault; wait until those under way have recovered (or their bound passed)."""
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _free(self, index: int) -> Target | None:
        """The scheduled target, or the next one whose kind has no fault under way."""
        with self._lock:
            for step in range(len(self.pool)):
                target = self.pool[(index + step) % len(self.pool)]
                if target.kind not in self._busy:
                    self._busy.add(target.kind)
                    return target
        return None

    def _apply(self, target: Target, fault: Fault) -> None:
        try:
            fault.began = self.now()
            self.log(f"fault at {fault.began:.0f}s: {fault.action} {target.process}")
            before = job_pid(target.process)
            if fault.action == "restart":
                fault.ended = self.now()
                stack.stop_service(target.service)
                stack.start_service(target.service)
            elif before is None:
                fault.note = "not running (its supervisor between two starts): skipped"
                return
            elif fault.action == "kill":
                _signal(process_tree(before), signal.SIGKILL)
                fault.ended = self.now()
            else:
                paused = process_tree(before)
                _signal(paused, signal.SIGSTOP)
                time.sleep(fault.pause_s)
                _signal(paused, signal.SIGCONT)
                fault.ended = self.now()
            self._await_recovery(target, fault, before)
        except Exception as exc:  # noqa: BLE001 - the timeline reports it; the run goes on
            fault.note = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            with self._lock:
                self._busy.discard(target.kind)

    def _await_recovery(self, target: Target, fault: Fault, before: int | None) -> None:
        """Until its supervisor runs a new process (after a kill) and the service is ready."""
        ended = fault.ended or self.now()  # a clean restart: from its beginning
        while self.now() - ended < RECOVERY_BOUND:
            restarted = fault.action != "kill" or job_pid(target.process) not in (None, before)
            if restarted and target.service.probe() is None:
                fault.recovered_s = round(self.now() - ended, 1)
                self.log(f"  {target.process} ready again {fault.recovered_s:.0f}s after the fault")
                return
            time.sleep(1)
        fault.note = f"not ready {RECOVERY_BOUND:.0f}s after the fault"


__all__ = ["ACTIONS", "Fault", "Nemesis", "Target", "schedule", "targets"]
