"""script/airflow_quiet.py: the API server's, the DAG processor's and the triggerer's idle loops,
slowed on the installed Airflow's (and uvicorn's) own classes, and the running stack's components
started through it."""

from __future__ import annotations

import asyncio
import json
import selectors
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests

from script import airflow_quiet
from script.layout import LOGS
from script.procs import supervisor_state


class RecordingSelector(selectors.DefaultSelector):
    """A real selector that remembers each timeout it was asked to wait for."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None):  # type: ignore[override]
        self.timeouts.append(timeout)
        return super().select(0)


def test_the_dag_processor_waits_longer_only_while_nothing_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.dag_processing.manager import DagFileProcessorManager

    # Restored after the test, whatever quiet_dag_processor does to the class.
    monkeypatch.setattr(
        DagFileProcessorManager,
        "_service_processor_sockets",
        DagFileProcessorManager._service_processor_sockets,
    )
    airflow_quiet.quiet_dag_processor(idle=5)
    selector = RecordingSelector()
    idle = SimpleNamespace(_processors={}, selector=selector)
    parsing = SimpleNamespace(_processors={"dags/users.py": object()}, selector=selector)

    DagFileProcessorManager._service_processor_sockets(idle, timeout=0.4)
    DagFileProcessorManager._service_processor_sockets(parsing, timeout=0.4)
    DagFileProcessorManager._service_processor_sockets(idle, timeout=None)

    assert selector.timeouts == [5, 0.4, None]


def test_the_triggerer_looks_for_triggers_every_idle_span_or_every_loop_when_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(airflow_quiet.time, "monotonic", lambda: now[0])
    calls: list[str] = []
    look = airflow_quiet._at_most_every(lambda self: calls.append(self.name), idle=5)
    idle = SimpleNamespace(
        name="idle", running_triggers=set(), creating_triggers=[], cancelling_triggers=set()
    )
    busy = SimpleNamespace(
        name="busy", running_triggers={7}, creating_triggers=[], cancelling_triggers=set()
    )

    for _ in range(10):  # ten one-second loops with nothing to do: at 0 s and 5 s
        look(idle)
        now[0] += 1
    for _ in range(3):  # a trigger runs: every loop
        look(busy)
        now[0] += 1

    assert calls == ["idle", "idle", "busy", "busy", "busy"]


def test_the_installed_airflow_has_what_the_launcher_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.jobs.triggerer_job_runner import TriggerRunner, TriggerRunnerSupervisor

    for name in ("load_triggers", "clean_unused"):
        monkeypatch.setattr(TriggerRunnerSupervisor, name, getattr(TriggerRunnerSupervisor, name))
    monkeypatch.setattr(TriggerRunner, "block_watchdog", TriggerRunner.block_watchdog)
    original, watchdog = TriggerRunnerSupervisor.load_triggers, TriggerRunner.block_watchdog
    airflow_quiet.quiet_triggerer()
    assert TriggerRunnerSupervisor.load_triggers is not original
    assert TriggerRunnerSupervisor.load_triggers.__wrapped__ is original
    assert TriggerRunner.block_watchdog.__wrapped__ is watchdog


def test_the_installed_uvicorn_has_the_loop_and_tick_the_api_servers_loop_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import inspect

    from uvicorn.server import Server

    monkeypatch.setattr(Server, "main_loop", Server.main_loop)
    original = Server.main_loop
    # What uvicorn's own loop does, and what the quiet loop keeps doing: on_tick(counter).
    assert "self.on_tick(counter)" in inspect.getsource(original)
    assert list(inspect.signature(Server.on_tick).parameters) == ["self", "counter"]
    airflow_quiet.quiet_api_server()
    assert Server.main_loop.__wrapped__ is original


def test_the_triggers_watchdog_watches_only_while_a_trigger_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    events: list[str] = []

    async def airflows_watchdog(self: object) -> None:  # stands in for the 0.1 s loop
        events.append("watching")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            events.append("stopped")
            raise

    monkeypatch.setattr(TriggerRunner, "block_watchdog", airflows_watchdog)
    airflow_quiet.quiet_trigger_watchdog(idle=0.01)
    runner = SimpleNamespace(stop=False, triggers={})

    async def until(condition) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"never: {events}")

    async def scenario() -> None:
        task = asyncio.create_task(TriggerRunner.block_watchdog(runner))
        for _ in range(20):  # twenty of its idle spans with no trigger: nothing watched
            await asyncio.sleep(0.01)
        assert events == []
        runner.triggers[1] = {"task": None}  # a deferred task's trigger starts
        await until(lambda: events == ["watching"])
        del runner.triggers[1]  # it fired
        await until(lambda: events == ["watching", "stopped"])
        runner.stop = True
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())


def test_the_api_servers_loop_wakes_once_a_tick_doing_uvicorns_once_a_second_work(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from uvicorn.server import Server

    monkeypatch.setattr(Server, "main_loop", Server.main_loop)
    airflow_quiet.quiet_api_server(tick=0.01)
    counters: list[int] = []

    async def on_tick(counter: int) -> bool:
        counters.append(counter)
        return len(counters) == 4  # uvicorn's answer once a stop was asked

    server = SimpleNamespace(on_tick=on_tick)
    asyncio.run(asyncio.wait_for(Server.main_loop(server), timeout=5))

    # Every wake is one uvicorn treats as a second's (counter % 10 == 0: the Date header, the
    # exit and request-limit checks), and the loop ends on the wake that is told to stop.
    assert counters == [0, 10, 20, 30]


def test_the_launcher_refuses_an_unknown_component() -> None:
    with pytest.raises(SystemExit, match="usage: python -m script.airflow_quiet"):
        airflow_quiet.main(["scheduler"])


@pytest.mark.parametrize("component", airflow_quiet.COMPONENTS)
def test_the_stacks_component_runs_through_the_launcher_healthy_with_its_loop_slowed(
    airflow_client, settings, component: str
) -> None:
    health = requests.get(f"{settings.stack.airflow_url}/api/v2/monitor/health", timeout=10).json()
    # Its heartbeat reached the database within Airflow's health threshold; the API server,
    # which has no heartbeat, answered and reached the database.
    part = "metadatabase" if component == "api-server" else component.replace("-", "_")
    assert health[part]["status"] == "healthy", health
    state = json.loads(supervisor_state(f"airflow-{component}").read_text())
    # What its supervisor started (after `--`): the API server retitles its own process
    # ("airflow api_server -- host:..."), so its supervisor's command line says it.
    supervisor = Path(f"/proc/{state['supervisor_pid']}/cmdline").read_bytes().split(b"\0")
    started = supervisor[supervisor.index(b"--") + 1 :]
    assert started[1:4] == [b"-m", b"script.airflow_quiet", component.encode()], started
    if component != "api-server":  # the component itself, below its supervisor
        command = Path(f"/proc/{state['job_pid']}/cmdline").read_bytes().split(b"\0")
        assert command[1:4] == [b"-m", b"script.airflow_quiet", component.encode()], command
    log = (LOGS / f"airflow-{component}.log").read_text(errors="replace")
    assert "airflow_quiet:" not in log, "the launcher could not wrap Airflow's loop: see the log"
