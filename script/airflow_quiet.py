"""Run Airflow's API server, DAG processor or triggerer with its idle loop slowed down:
`python -m script.airflow_quiet dag-processor` (or `triggerer ...`, `api-server ...`) in place
of `airflow dag-processor`.

Airflow 3.3 writes the DAG processor's and the triggerer's one-second loops into its code, with
no setting: on an idle stack the DAG processor asks Postgres for callbacks and parsing requests
every second, and the triggerer asks for unassigned and unused triggers every second. Together
with Postgres serving them that was a fifth of an idle stack's CPU (docs/benchmark.md, "Why an
idle stack is quiet"). Here:

- the DAG processor waits up to IDLE_SECONDS between its loops while no file is being parsed
  (a parse that is due, a callback, a reparse asked in the UI start within that);
- the triggerer looks for new and unused triggers every IDLE_SECONDS while it runs none (a
  deferred task's trigger starts within that); while any trigger runs, every second as before;
- the triggerer's watchdog, which warns of a trigger that blocks its event loop by waking ten
  times a second, wakes once every WATCHDOG_IDLE_SECONDS while no trigger runs (nothing could
  block the loop then) and watches as before from the moment one does;
- the API server's uvicorn wakes once every TICK_SECONDS, not ten times a second: its loop
  does nothing on the other nine wakes (its Date header changes once a second; a stop is seen
  on the next wake). Requests never wait for that loop: they are served as they come.

Nothing else changes: the same command line, settings, heartbeats and health checks. Should a
later Airflow rename what this wraps, the component says so in its log and runs unchanged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

IDLE_SECONDS = 5.0
WATCHDOG_IDLE_SECONDS = 1.0
TICK_SECONDS = 1.0
COMPONENTS = ("api-server", "dag-processor", "triggerer")

log = logging.getLogger(__name__)


def quiet_dag_processor(idle: float = IDLE_SECONDS) -> None:
    """While no parsing process runs, the manager's wait for its processes' sockets (its loop's
    sleep) lasts `idle` seconds instead of the rest of one second."""
    from airflow.dag_processing.manager import DagFileProcessorManager

    service = DagFileProcessorManager._service_processor_sockets

    @functools.wraps(service)
    def _service_processor_sockets(self: Any, timeout: float | None = 1.0) -> None:
        if timeout is not None and not self._processors:
            timeout = max(timeout, idle)
        return service(self, timeout=timeout)

    DagFileProcessorManager._service_processor_sockets = _service_processor_sockets


def quiet_triggerer(idle: float = IDLE_SECONDS) -> None:
    """While the triggerer runs, creates and cancels no trigger, its database look-ups for
    triggers to take and triggers to delete run every `idle` seconds instead of every loop."""
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    for name in ("load_triggers", "clean_unused"):
        method = getattr(TriggerRunnerSupervisor, name)
        setattr(TriggerRunnerSupervisor, name, _at_most_every(method, idle))
    quiet_trigger_watchdog()


def quiet_trigger_watchdog(idle: float = WATCHDOG_IDLE_SECONDS) -> None:
    """The trigger runner's watchdog (Airflow's, every 0.1 s) runs only while the runner has
    triggers; without any, the loop that starts it wakes every `idle` seconds."""
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    watch = TriggerRunner.block_watchdog

    @functools.wraps(watch)
    async def block_watchdog(self: Any) -> None:
        watching: asyncio.Task[None] | None = None
        try:
            while not self.stop:
                if self.triggers and watching is None:
                    watching = asyncio.create_task(watch(self))
                elif not self.triggers and watching is not None:
                    watching.cancel()
                    watching = None
                if watching is not None and watching.done():
                    watching.result()  # its error, as Airflow's runner would see it
                    return
                await asyncio.sleep(idle)
        finally:
            if watching is not None:
                watching.cancel()

    TriggerRunner.block_watchdog = block_watchdog


def quiet_api_server(tick: float = TICK_SECONDS) -> None:
    """uvicorn's main loop (Airflow's API server, one worker, in this process) wakes every
    `tick` seconds instead of every 0.1 s. Each wake does what uvicorn does once a second (its
    counter kept a multiple of ten): the Date header, the exit check, the request limit."""
    from uvicorn.server import Server

    main_loop = Server.main_loop

    @functools.wraps(main_loop)
    async def quiet_main_loop(self: Any) -> None:
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + 10) % 864000
            await asyncio.sleep(tick)
            should_exit = await self.on_tick(counter)

    Server.main_loop = quiet_main_loop


def _busy(supervisor: Any) -> bool:
    s = supervisor
    return bool(s.running_triggers or s.creating_triggers or s.cancelling_triggers)


def _at_most_every(method: Callable[[Any], None], idle: float) -> Callable[[Any], None]:
    last = -float("inf")

    @functools.wraps(method)
    def throttled(self: Any) -> None:
        nonlocal last
        now = time.monotonic()
        if _busy(self) or now - last >= idle:
            last = now
            method(self)

    return throttled


def quiet(component: str) -> None:
    """Slow down `component`'s idle loop; a missing hook is logged, never fatal."""
    try:
        {
            "api-server": quiet_api_server,
            "dag-processor": quiet_dag_processor,
            "triggerer": quiet_triggerer,
        }[component]()
    except (ImportError, AttributeError) as exc:
        log.warning(
            "airflow_quiet: %s runs with its own idle loop unchanged: %s (%s) is not what "
            "script/airflow_quiet.py wraps in this Airflow (or uvicorn) version",
            component,
            exc,
            exc.__class__.__name__,
        )


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in COMPONENTS:
        names = "|".join(COMPONENTS)
        sys.exit(f"usage: python -m script.airflow_quiet {{{names}}} [airflow's arguments...]")
    quiet(argv[0])
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *argv]
    airflow_main()


if __name__ == "__main__":
    main(sys.argv[1:])
