"""The pipeline page (http://localhost:MONITOR_PORT) in a real browser, against the real stack.

Headless Chromium from Debian (/usr/bin/chromium), driven by Playwright: the page loads with
every section and asks nothing of the internet; its numbers move while users flow; a bad message
shows up as a dead letter with its reason; a user found in the page matches its Cassandra row;
a stopped stream job shows as stopped within 5 s. The users and the bad message go to the
pipeline's own topic (they land in the user's table, as `./run.sh` runs do). Screenshots go to
pytest's temporary folder and to `.stack/logs/screenshots/`.

Run against the running stack (`./run.sh up`); the stream job is started if it is not running,
and stopped again after.
"""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import config, contract, producer, registry
from script import stack
from script.layout import LOGS
from script.monitor import collect
from script.services import STREAM, named

# Ceilings of the waits (each wait returns as soon as the page shows what it waits for).
PAGE_SECONDS = 60  # the page's first figures
FLOW_SECONDS = 180  # users sent until they are counted on the page
STOPPED_SECONDS = 5  # the bound: a stopped job shows as stopped


@pytest.fixture(scope="module")
def monitor_url(settings: config.Settings) -> str:
    """The stack's pipeline page, started if it is not running."""
    stack.start_service(named("monitor"))
    return f"http://127.0.0.1:{settings.monitor.port}/"


@pytest.fixture(scope="module")
def stream_job() -> Iterator[None]:
    """The user's stream job, running (started here, and stopped after, if it was not)."""
    was_running = STREAM.pid() is not None
    stack.start_service(STREAM)
    yield
    if not was_running:
        stack.stop_service(STREAM)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Any, str], Path]:
    """Save a full-page screenshot under the run's temporary folder and `.stack/logs/`."""
    folder = tmp_path_factory.mktemp("monitor-screenshots")
    kept = LOGS / "screenshots"
    kept.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str) -> Path:
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        shutil.copy(path, kept / path.name)
        return path

    return shot


@pytest.fixture
def page(browser: Any, monitor_url: str) -> Iterator[Any]:
    """A browser tab on the page, with every request and console error it made recorded."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.requests, tab.errors = [], []  # type: ignore[attr-defined]
    tab.on("request", lambda r: tab.requests.append(r.url))
    tab.on("console", lambda m: tab.errors.append(m.text) if m.type == "error" else None)
    tab.goto(monitor_url)
    tab.wait_for_selector("#job-state", timeout=PAGE_SECONDS * 1000)
    yield tab
    context.close()


def number(page: Any, selector: str) -> int:
    return int(page.inner_text(selector).replace(",", ""))


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    """``check()``'s first truthy value; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"the page did not show {what} within {timeout:.0f}s")
        time.sleep(every)


def send(settings: config.Settings, values: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) messages to the pipeline's topic, with the producer's settings."""
    kafka = producer.create_producer(settings.kafka)
    try:
        for key, value in values:
            kafka.send(settings.kafka.topic, key=key, value=value)
        kafka.flush(timeout=60)
    finally:
        kafka.close()


def users(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    """``n`` valid users (the stand-in's, formatted as the producer formats them), ids tagged."""
    from pipeline.formatting import Skip, format_user
    from standin import generate_users

    out = []
    for i, raw in enumerate(generate_users(tag, 1, n)):
        record = format_user(raw, int(time.time() * 1000))
        if isinstance(record, Skip):
            continue
        record = {**record, contract.PRIMARY_KEY: f"{tag}-{i:06d}"}
        out.append((producer.encode_key(record), producer.encode_value(record)))
    return out


def test_the_page_loads_every_section_from_this_machine_only(
    page: Any, monitor_url: str, shots: Callable
) -> None:
    for section in ("Kafka", "Stream job", "Cassandra", "Schema Registry", "Airflow"):
        assert page.get_by_role("heading", name=section, exact=True).is_visible(), section
    wait_until("a broker", lambda: page.query_selector("#brokers"), PAGE_SECONDS)
    wait_until("the schema", lambda: page.query_selector("#schema-subject"), PAGE_SECONDS)
    assert page.inner_text("#schema-subject") == registry.subject(config.load().kafka.topic)
    wait_until("the DAG runs", lambda: page.query_selector("#dag-runs"), PAGE_SECONDS)
    links = {a.inner_text(): a.get_attribute("href") for a in page.query_selector_all("nav a")}
    assert links["Airflow UI"].startswith("http://localhost:")
    assert links["Spark UI"].startswith("http://localhost:")
    elsewhere = [u for u in page.requests if not u.startswith(monitor_url)]
    assert not elsewhere, f"the page fetched from elsewhere: {elsewhere[:5]}"
    assert not page.errors, page.errors[:5]
    shots(page, "monitor-loaded")


def test_rows_and_offsets_grow_while_users_flow(
    page: Any, settings: config.Settings, shots: Callable, stream_job: None
) -> None:
    wait_until("the row count", lambda: page.query_selector("#rows-count"), PAGE_SECONDS)
    messages, rows = number(page, "#topic-total"), number(page, "#rows-count")
    batch = users(2000, f"monitor-{uuid.uuid4().hex[:8]}")
    send(settings, batch)
    wait_until("the topic grow", lambda: number(page, "#topic-total") >= messages + len(batch), 60)
    wait_until(
        "the rows grow", lambda: number(page, "#rows-count") >= rows + len(batch), FLOW_SECONDS
    )
    shots(page, "monitor-flowing")


def test_a_bad_message_shows_as_a_dead_letter_with_its_reason(
    page: Any, settings: config.Settings, cassandra_session: Any, stream_job: None
) -> None:
    marker = f"monitor-bad-{uuid.uuid4().hex[:8]}"
    send(settings, [(marker.encode(), f'{{"id": "{marker}", <not json>'.encode())])
    row = wait_until(
        "the dead letter",
        lambda: next(
            (
                r
                for r in page.query_selector_all("#dead-latest tbody tr")
                if marker in r.inner_text()
            ),
            None,
        ),
        FLOW_SECONDS,
    )
    cells = [c.inner_text() for c in row.query_selector_all("td")]
    partition, offset = cells[1].removeprefix("p").split("@")
    c = settings.cassandra
    stored = cassandra_session.execute(
        f"SELECT reason, raw_value FROM {c.keyspace}.{c.dead_letter_table} "
        "WHERE topic = %s AND partition = %s AND offset = %s",
        (settings.kafka.topic, int(partition), int(offset)),
    ).one()
    assert cells[3] == stored.reason
    assert "<not json>" in cells[4]  # escaped by the page, shown as the text it is
    reasons = page.inner_text("#dead-reasons")
    assert stored.reason in reasons


def test_a_user_searched_in_the_page_matches_its_cassandra_row(
    page: Any, settings: config.Settings, cassandra_session: Any, shots: Callable, stream_job: None
) -> None:
    key, value = users(1, f"monitor-{uuid.uuid4().hex[:8]}")[0]
    send(settings, [(key, value)])
    user_id = key.decode()
    c = settings.cassandra

    def landed() -> Any:
        return cassandra_session.execute(
            f"SELECT * FROM {c.keyspace}.{c.table} WHERE id = %s", (user_id,)
        ).one()

    expected = wait_until("the user's row in Cassandra", landed, FLOW_SECONDS)
    page.fill("#search-id", user_id)
    page.click("#search-go")
    wait_until("the search result", lambda: page.query_selector("#search-row tbody"), 30)
    shown = dict(
        tuple(cell.inner_text() for cell in tr.query_selector_all("td"))
        for tr in page.query_selector_all("#search-row tbody tr")
    )
    for column, value in expected._asdict().items():
        assert shown[column] == str(value), column
    message = page.inner_text("#search-message")
    assert f'"id": "{user_id}"' in message
    shots(page, "monitor-search")


def test_a_stopped_stream_job_shows_as_stopped_within_5_seconds(
    page: Any, stream_job: None, user_pipeline_stays_healthy: None
) -> None:
    wait_until("the job running", lambda: page.inner_text("#job-state") == "running", 60)
    try:
        stack.stop_service(STREAM)
        stopped = time.monotonic()
        wait_until(
            "the job stopped",
            lambda: page.inner_text("#job-state") == "stopped",
            STOPPED_SECONDS,
            every=0.2,
        )
        assert time.monotonic() - stopped <= STOPPED_SECONDS
    finally:
        stack.start_service(STREAM)
    wait_until("the job running again", lambda: page.inner_text("#job-state") == "running", 60)


# ---- the plain functions the page is built from ----


def test_the_query_gauges_are_read_by_name_from_sparks_metrics() -> None:
    gauges = {
        "app-1.driver.spark.streaming.created_users.inputRate-total": {"value": 12.5},
        "app-1.driver.spark.streaming.created_users.processingRate-total": {"value": 10},
        "app-1.driver.spark.streaming.created_users.latency": {"value": 523},
        "app-1.driver.spark.streaming.created_users.states-rowsTotal": {"value": 0},
        "app-1.driver.BlockManager.memory.memUsed_MB": {"value": 3},
    }
    assert collect.query_gauges(gauges) == {
        "input_rows_per_s": 12.5,
        "processed_rows_per_s": 10.0,
        "batch_ms": 523.0,
    }


def test_lag_is_what_the_job_has_not_committed_per_partition() -> None:
    assert collect.lag({0: 10, 1: 5, 2: 0}, {0: 4, 1: 5}) == {0: 6, 1: 0, 2: 0}


def test_latency_is_the_write_time_minus_the_produce_time() -> None:
    rows = [
        {"produced_at": 1_000, "written_us": 1_500_000},
        {"produced_at": 2_000, "written_us": 4_000_000},
        {"produced_at": None, "written_us": 5_000_000},
    ]
    assert collect.latencies_ms(rows) == [500.0, 2000.0]
    assert collect.percentiles([float(n) for n in range(1, 101)]) == [51.0, 95.0, 99.0]


def test_a_value_is_pretty_printed_when_it_is_json_and_kept_as_text_otherwise() -> None:
    assert collect.pretty(b'{"id":"a","n":1}') == '{\n  "id": "a",\n  "n": 1\n}'
    assert collect.pretty(b"<not json>") == "<not json>"
    assert collect.pretty(b"\xff\xfe") == "\ufffd\ufffd"
    assert collect.pretty(None) == "(null)"


def test_the_reader_asks_nothing_until_a_browser_reads_the_page(settings: config.Settings) -> None:
    """A page nobody has opened costs the stack nothing: started, the reader rests (no figure
    read for two of its fast ticks); the first read of the page wakes it."""
    from script.monitor.watch import FAST, Watch

    watch = Watch(settings)
    watch.start()
    try:
        time.sleep(2 * FAST + 1)
        assert watch._state == {"updated": None}  # read directly: not a read of the page
        assert watch.snapshot()["updated"] is None  # the page's first read
        wait_until("the rows", lambda: "rows" in watch._state, PAGE_SECONDS)
        assert {"brokers", "topic", "rows"} <= set(watch._state) and watch._state["updated"]
    finally:
        watch.stop()


def test_a_run_nobody_watches_is_in_the_charts_of_a_page_opened_after_it(
    settings: config.Settings, stream_job: None
) -> None:
    """While nobody watches, the reader looks at the topic's size alone; once it grows, it reads
    the rate, the lag and the latency for the charts, and still counts no row."""
    from script.monitor.watch import Watch

    watch = Watch(settings)
    watch.start()
    try:
        wait_until("the first look at the topic", lambda: watch._looked, PAGE_SECONDS)
        assert watch._state == {"updated": None}  # resting: no figure read yet
        tag = f"monitor-unwatched-{uuid.uuid4().hex[:8]}"
        batch = users(2000, tag)
        send(settings, batch)

        def latency_of_the_run() -> Any:
            return watch._series.get("latency_ms")

        wait_until("the run's latency", latency_of_the_run, FLOW_SECONDS)
        assert "rows" not in watch._state  # the row count waits for a reader of the page
        state = watch.snapshot()  # a browser opens the page after the run
        rates = [point[1] for point in state["series"]["msgs_per_s"]]
        assert max(rates) > 0, rates  # the run's messages per second
        assert state["series"]["lag"] and state["series"]["latency_ms"]
        assert state["topic"]["messages"] >= len(batch)
        # Every sampled user found in Cassandra: the run's last sample stays, with its time.
        wait_until("every sampled user written", lambda: not watch._pending, FLOW_SECONDS)
        after = watch.snapshot()
        last = after["latency"]
        assert last["sample"] > 0 and last["p50"] > 0, last
        assert last["at"] == after["series"]["latency_ms"][-1][0], last
    finally:
        watch.stop()
