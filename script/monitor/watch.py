"""The pipeline page's one reader: a thread that asks the services every few seconds and keeps
what the page shows, with the last 15 minutes of each figure for the charts.

However many browsers have the page open, the services are asked once per tick: the page only
reads the latest snapshot. Every FAST seconds: the topic's offsets and size, the stream job,
rows in Cassandra (one token slice of the table per tick), latency, the latest messages. Every
SLOW seconds: brokers and partitions, Cassandra's nodes, dead letters, the schema, DAG runs.

Nobody has read the page for UNWATCHED seconds (or ever): the reader rests, but for one look at
the topic's size every LOOK seconds. While that grows (and a minute after), it reads the fast
figures but the row count, so that a browser opened after a run sees that run in its charts.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import requests
from cassandra import DriverException
from cassandra.cluster import NoHostAvailable
from kafka.errors import KafkaError

from pipeline import config, registry
from pipeline.config import Settings
from script import supervise
from script.airflow_api import AirflowClient, AirflowError
from script.monitor import collect
from script.pipeline_status import count_slice, token_slices
from script.services.airflow import HOME as AIRFLOW_HOME
from script.services.monitor import UNWATCHED
from script.services.stream import SUPERVISOR_STATE

log = logging.getLogger(__name__)

FAST, SLOW = 2.0, 10.0  # seconds between two reads of the fast and of the slow figures
LOOK = 5.0  # seconds between two looks at the topic's size while nobody watches the page
WINDOW = 15 * 60  # seconds of history the charts show
SLICES = 16  # the users table is counted in token slices, 1/SLICES of it per query
COUNT_BUDGET = 0.3  # seconds of counting per FAST tick at most
LATEST = 20  # messages in the browser
TASK_ID = "stream_users"

# What a service that does not answer raises: shown on the page in its section, then retried.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    KafkaError,
    DriverException,
    NoHostAvailable,
    OSError,
    requests.RequestException,
    registry.RegistryError,
    AirflowError,
    ValueError,
)


class Watch:
    """The latest figures and their history, refreshed by a daemon thread (``start``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"updated": None}
        self._series: dict[str, deque] = {}
        self._kafka: dict[str, Any] = {}
        self._cassandra: Any = None
        self._http = requests.Session()
        self._airflow: AirflowClient | None = None
        self._slices = token_slices(SLICES)
        self._slice_rows: dict[int, int] = {}
        self._next_slice = 0
        self._dirty_slices = set(range(SLICES))  # slices to count (again) since rows came in
        self._last_ends: tuple[dict[int, int], dict[int, int]] | None = None
        self._last_bytes: tuple[float, int] | None = None
        self._last_offsets: tuple[float, int] | None = None
        self._measured: dict[int, int] = {}  # partition -> next offset to sample latency from
        self._pending: dict[str, float] = {}  # user id -> when first seen, waiting for its row
        self._leaders: dict[int, int] = {}
        self._partitions: list[int] = []
        self._sampled: list[dict[str, Any]] = []
        self._stop = threading.Event()
        # The page's last read, never yet: the reader rests from the start until a browser reads
        # the page. Counting as a read, the start kept it asking the services for its first
        # minute, which is when `./run.sh` starts its first run: on a stack with many rows, its
        # first count of the users' table took most of a core of Cassandra's for seconds.
        self._watched_at = float("-inf")
        # While nobody watches, the topic's size at the last look and when it last grew: a run
        # then still leaves its rate, lag, batches and latency in the charts.
        self._looked: tuple[float, int] | None = None  # (time, messages)
        self._flowed_at = float("-inf")

    # ---------------------------------------------------------------- the page's side

    def snapshot(self) -> dict[str, Any]:
        """The latest figures and the charts' series, as plain data."""
        self._watched_at = time.monotonic()
        with self._lock:
            state = dict(self._state)
            state["series"] = {k: list(v) for k, v in self._series.items()}
        return state

    def search(self, user_id: str) -> dict[str, Any]:
        """The user's row in Cassandra and its message in Kafka, each None when not found."""
        from kafka import KafkaConsumer

        c = self.settings.cassandra
        session = self._session()
        rows = collect.user_rows(session, c.keyspace, c.table, [user_id])
        row = rows.get(user_id)
        found = None
        with self._lock:
            latest = list(self._state.get("messages", []))
        found = next((m for m in latest if m["key"] == user_id), None)
        if found is None and row and row.get("produced_at"):
            consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                enable_auto_commit=False,
                request_timeout_ms=10000,
            )
            try:
                found = collect.find_message(
                    consumer, self.settings.kafka.topic, user_id, row["produced_at"]
                )
            finally:
                consumer.close()
        if row:
            row = {k: _shown(v) for k, v in row.items()}
        return {"id": user_id, "row": row, "message": found}

    # ---------------------------------------------------------------- the reader thread

    def start(self) -> None:
        threading.Thread(target=self._run, name="monitor-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        next_slow = next_look = 0.0
        while not self._stop.is_set():
            began = time.monotonic()
            if began - self._watched_at > UNWATCHED:
                next_slow = 0.0
                if began >= next_look:
                    next_look = began + LOOK
                    if self._users_flow(began):
                        # Nobody watches, users flow: the cheap figures alone, for the charts
                        # of a browser that opens the page later (no row count, no slow part).
                        self._tick([self._job, self._topic, self._latency])
                self._stop.wait(0.5)  # a browser that comes back sees fresh figures at once
                continue
            self._looked = None  # watched: the next rest looks afresh
            if began >= next_slow:
                self._tick([self._brokers, self._cassandra_state, self._schema, self._dag_runs])
                next_slow = began + SLOW
            self._tick([self._job, self._topic, self._rows, self._latency])
            self._stop.wait(max(0.2, FAST - (time.monotonic() - began)))

    def _users_flow(self, now: float) -> bool:
        """Whether the topic grew within the last UNWATCHED seconds: one look at its end offsets
        (a single Kafka request), compared with the last look's."""
        try:
            ends = collect.end_offsets(self._consumer(), self.settings.kafka.topic)
        except UNAVAILABLE:
            self._reset("topic")
            return False
        looked, self._looked = self._looked, (time.time(), sum(ends.values()))
        if looked is not None and looked[1] != self._looked[1]:
            if now - self._flowed_at > UNWATCHED:
                self._last_offsets = looked  # the first rate: since the last look
            self._flowed_at = now
        return now - self._flowed_at <= UNWATCHED

    def _tick(self, parts: list[Callable[[], dict[str, Any]]]) -> None:
        for part in parts:
            name = part.__name__.strip("_")
            try:
                found = part()
            except UNAVAILABLE as exc:
                found = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
                self._reset(name)
            except Exception:  # a bug here must not stop the page: logged with its traceback
                log.exception("reading %s failed", name)
                found = {"error": "unexpected error, see the monitor's log"}
                self._reset(name)
            with self._lock:
                self._state[name] = found
                self._state["updated"] = time.time()

    def _reset(self, part: str) -> None:
        """Drop the clients of ``part`` so that the next tick connects afresh."""
        if part in ("brokers", "topic"):
            for client in self._kafka.values():
                try:
                    client.close()
                except (KafkaError, OSError):
                    pass  # closing a client that already broke: nothing more to report
            self._kafka.clear()
        if part in ("cassandra_state", "rows", "latency") and self._cassandra is not None:
            self._cassandra.cluster.shutdown()
            self._cassandra = None
        if part == "dag_runs":
            self._airflow = None

    def _point(self, name: str, at: float, *values: float) -> None:
        with self._lock:
            series = self._series.setdefault(name, deque(maxlen=int(WINDOW / FAST) + 1))
            series.append((at, *values))

    # ---------------------------------------------------------------- clients

    def _admin(self) -> Any:
        from kafka import KafkaAdminClient

        if "admin" not in self._kafka:
            self._kafka["admin"] = KafkaAdminClient(
                bootstrap_servers=self.settings.kafka.bootstrap_servers, request_timeout_ms=5000
            )
        return self._kafka["admin"]

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        if "consumer" not in self._kafka:
            self._kafka["consumer"] = KafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers,
                enable_auto_commit=False,
                request_timeout_ms=10000,
            )
        return self._kafka["consumer"]

    def _session(self) -> Any:
        from script.pipeline_status import cassandra_session

        if self._cassandra is None:
            _, self._cassandra = cassandra_session(self.settings.cassandra)
        return self._cassandra

    def _airflow_client(self) -> AirflowClient | None:
        if self._airflow is None:
            s = self.settings.stack
            password = s.airflow_admin_password
            saved = AIRFLOW_HOME / "admin-password"
            if not password and saved.exists():
                password = saved.read_text().strip()
            if not password:
                return None
            url = config.monitor_urls(self.settings)[1]
            self._airflow = AirflowClient(url, s.airflow_admin_username, password)
        return self._airflow

    # ---------------------------------------------------------------- the parts

    def _brokers(self) -> dict[str, Any]:
        found = collect.brokers(self._admin(), self.settings)
        self._leaders = {p["partition"]: p["leader"] for p in found["partitions"]}
        return found

    def _job(self) -> dict[str, Any]:
        found = collect.spark_job(config.monitor_urls(self.settings)[0], self._http)
        state = supervise.read_state(SUPERVISOR_STATE) if SUPERVISOR_STATE.exists() else None
        if state:
            found["restarts"] = state.restarts
            if state.last_exit is not None:
                found["last_exit"] = supervise.describe_exit(state.last_exit)
                found["last_exit_at"] = time.strftime(
                    "%H:%M:%S", time.localtime(state.last_exit_at or 0)
                )
        now = time.time()
        for key in ("input_rows_per_s", "processed_rows_per_s", "batch_ms"):
            if found.get("running") and key in found:
                self._point(key, now, found[key])
        return found

    def _topic(self) -> dict[str, Any]:
        topic = self.settings.kafka.topic
        consumer = self._consumer()
        ends = collect.end_offsets(consumer, topic)
        batch, committed = collect.committed_offsets(self.settings)
        now = time.time()
        total = sum(ends.values())
        if self._last_offsets and now > self._last_offsets[0]:
            rate = max(0, total - self._last_offsets[1]) / (now - self._last_offsets[0])
            self._point("msgs_per_s", now, rate)
        self._last_offsets = (now, total)
        if self._leaders:
            size = sum(collect.partition_bytes(self._admin(), topic, self._leaders).values())
            if self._last_bytes and now > self._last_bytes[0]:
                rate = max(0, size - self._last_bytes[1]) / (now - self._last_bytes[0])
                self._point("bytes_per_s", now, rate)
            self._last_bytes = (now, size)
        # New rows may land anywhere in the ring, until the job has committed what came in (it
        # commits a batch once its rows are written): count every slice again after either.
        if (ends, committed) != self._last_ends:
            self._dirty_slices = set(range(SLICES))
            self._last_ends = (ends, committed)
        self._partitions = sorted(ends)
        messages = collect.latest_messages(consumer, topic, ends, LATEST)
        self._sampled = messages  # for the latency
        with self._lock:
            self._state["messages"] = messages[:LATEST]
        lag = collect.lag(ends, committed)
        self._point("lag", now, sum(lag.values()))
        return {
            "topic": topic,
            "end_offsets": ends,
            "messages": total,
            "committed": committed,
            "batch": batch,
            "lag": lag,
        }

    def _rows(self) -> dict[str, Any]:
        c = self.settings.cassandra
        session = self._session()
        meta = session.cluster.metadata.keyspaces.get(c.keyspace)
        if meta is None or c.table not in meta.tables:
            return {"rows": None}
        # Slices in ring order, each counted again once rows came in, for at most
        # COUNT_BUDGET seconds a tick (the first count of all of them excepted): a small table
        # is recounted whole every tick, a large one over several.
        began = time.monotonic()
        first = len(self._slice_rows) < SLICES
        while self._dirty_slices and (first or time.monotonic() - began < COUNT_BUDGET):
            while self._next_slice not in self._dirty_slices:
                self._next_slice = (self._next_slice + 1) % SLICES
            i = self._next_slice
            lo, hi = self._slices[i]
            self._slice_rows[i] = count_slice(session, c.keyspace, c.table, lo, hi)
            self._dirty_slices.discard(i)
            self._next_slice = (i + 1) % SLICES
        total = sum(self._slice_rows.values())
        self._point("rows", time.time(), total)
        return {"rows": total, "counting": len(self._dirty_slices)}

    def _latency(self) -> dict[str, Any]:
        sampled, self._sampled = self._sampled, []
        now = time.time()
        for m in sampled:  # new messages of the last two minutes: the latency of now
            fresh = now * 1000 - m["timestamp"] < 120_000
            if fresh and m["key"] and m["offset"] >= self._measured.get(m["partition"], 0):
                self._pending.setdefault(m["key"], now)
        for m in sampled:
            self._measured[m["partition"]] = max(
                self._measured.get(m["partition"], 0), m["offset"] + 1
            )
        self._pending = {k: t for k, t in self._pending.items() if now - t < 60}
        values: list[float] = []
        if self._pending:
            c = self.settings.cassandra
            ids = list(self._pending)[:100]
            rows = collect.user_rows(self._session(), c.keyspace, c.table, ids)
            for key in rows:
                self._pending.pop(key, None)
            values = collect.latencies_ms(list(rows.values()))
        if values:
            p50, p95, p99 = collect.percentiles(values)
            self._point("latency_ms", now, p50, p95, p99)
            return {"p50": p50, "p95": p95, "p99": p99, "sample": len(values), "at": now}
        with self._lock:  # nothing new measured: the last sample stays, with its time
            return dict(self._state.get("latency") or {})

    def _cassandra_state(self) -> dict[str, Any]:
        c = self.settings.cassandra
        session = self._session()
        return {
            "nodes": collect.cassandra_nodes(session),
            "dead_letters": collect.dead_letters(
                session,
                c.keyspace,
                c.dead_letter_table,
                self.settings.kafka.topic,
                self._partitions or list(range(self.settings.kafka.partitions)),
            ),
        }

    def _schema(self) -> dict[str, Any]:
        name = registry.subject(self.settings.kafka.topic)
        return collect.schema_subject(self.settings.registry.url, name)

    def _dag_runs(self) -> dict[str, Any]:
        client = self._airflow_client()
        if client is None:
            return {"error": "no Airflow login (AIRFLOW_ADMIN_PASSWORD)"}
        return {"runs": collect.dag_runs(client, config.DAG_ID, TASK_ID)}


def _shown(value: Any) -> Any:
    return value if isinstance(value, str | int | float | type(None)) else str(value)
