"""The stream job heals itself, shown on the real local services with users flowing.

Each test runs its own supervised job (``./run.sh supervise -- spark-submit ...``, as
``./run.sh stream`` does) on its own topic, keyspace, checkpoint and UI port, offers users at a
steady rate, breaks something (Cassandra stopped or frozen, the broker restarted, SIGTERM while
a write is retrying, a topic that does not exist yet, a message Cassandra would refuse), and
then counts: every user the broker acknowledged is one row in Cassandra, equal to what was
sent, and nothing else is. A service a test stops is started again before the test ends, and
a stream job that was already running (the user's) is checked to have caught up again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import count_when_ready
from kafka import KafkaAdminClient, KafkaProducer

from pipeline import config, contract, producer
from script import services, supervise
from script.layout import DATA, LOGS
from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace
from script.services.stream import READY, stream_command, stream_env
from spark_stream import NO_TOPIC_YET

REPO = Path(__file__).resolve().parents[1]
RATE = 1000  # users per second offered, as the issue asks


def user() -> dict[str, Any]:
    user_id = str(uuid.uuid4())
    return {
        "id": user_id,
        "first_name": "Zoë",
        "last_name": "O'Brien",
        "gender": "female",
        "address": "1 Rue de l'Église, Genève",
        "post_code": "1204",
        "email": f"{user_id[:8]}@example.com",
        "username": f"user_{user_id[:8]}",
        "dob": "1990-07-14T03:04:05.678Z",
        "registered_date": "2015-01-02T03:04:05.678Z",
        "phone": "(555) 010-0000",
        "picture": "https://example.com/portraits/1.jpg",
        "produced_at": 0,
    }


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


class Feeder:
    """Sends users to ``topic`` at ``rate`` per second in a thread; keeps the acknowledged ones."""

    def __init__(self, bootstrap: str, topic: str, rate: float) -> None:
        self.topic, self.rate = topic, rate
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
            retries=2**31 - 1,
            delivery_timeout_ms=180_000,
            max_block_ms=60_000,
        )
        self.acked: dict[str, dict[str, Any]] = {}
        self.failed = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feeder", daemon=True)

    def __enter__(self) -> Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _acked(self, record: dict[str, Any]) -> Callable[[Any], None]:
        def on_ack(_metadata: Any) -> None:
            with self._lock:
                self.acked[record["id"]] = record

        return on_ack

    def _failed(self, _exc: BaseException) -> None:
        with self._lock:
            self.failed += 1

    def _run(self) -> None:
        started, sent = time.monotonic(), 0
        while not self._done.is_set():
            due = int((time.monotonic() - started) * self.rate)
            for _ in range(due - sent):
                record = {**user(), "produced_at": time.time_ns() // 1_000_000}
                try:
                    future = self.producer.send(
                        self.topic, key=record["id"].encode(), value=encode(record)
                    )
                except Exception as exc:  # noqa: BLE001 - a send the broker never took
                    self._failed(exc)
                    continue
                future.add_callback(self._acked(record))
                future.add_errback(self._failed)
            sent = max(sent, due)
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop sending and wait until every send is acknowledged or failed."""
        if not self._done.is_set():
            self._done.set()
            self._thread.join()
            self.producer.flush(timeout=180)
            self.producer.close(timeout=30)


class SideJob:
    """A supervised stream job of its own: topic, keyspace, checkpoint, UI port, state file."""

    def __init__(self, name: str, overrides: dict[str, str] | None = None) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.topic = self.keyspace = f"heal_{name}_{suffix}"
        self.folder = DATA / "test" / f"heal-{name}-{suffix}"
        self.log = LOGS / f"test-heal-{name}-{suffix}.log"
        self.state = self.folder / "supervisor.json"
        self.env = {
            **stream_env(),
            "KAFKA_TOPIC": self.topic,
            "CASSANDRA_KEYSPACE": self.keyspace,
            "SPARK_CHECKPOINT_DIR": str(self.folder / "checkpoint"),
            "SPARK_UI_PORT": str(4090 + int(suffix, 16) % 50),
            **(overrides or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._since = 0  # where the latest start's lines begin in the log

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._since = self.log.stat().st_size if self.log.exists() else 0
        command = [
            sys.executable,
            "-m",
            "script",
            "supervise",
            "--state",
            str(self.state),
            "--",
            *stream_command(self.env),
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
            )
        self.wait_ready()

    def text(self) -> str:
        """What the supervisor and the job logged since the latest start."""
        with self.log.open("rb") as log:
            log.seek(self._since)
            return log.read().decode(errors="replace")

    def wait_ready(self, timeout: float = 240) -> None:
        self.wait_for(lambda: READY in self.text(), "the job to be ready", timeout)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> float:
        """Seconds until ``condition`` held; fails the test naming the log when it does not."""
        started = time.monotonic()
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the supervisor exited ({self.process.returncode}); see {self.log}")
            if time.monotonic() - started > timeout:
                pytest.fail(f"no {what} after {timeout:.0f} s; see {self.log}")
            time.sleep(0.5)
        return time.monotonic() - started

    def restarts(self) -> int:
        state = supervise.read_state(self.state)
        return state.restarts if state else 0

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the supervisor (as `./run.sh stream stop` does); its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(self.process.pid), signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


@pytest.fixture
def side_job(kafka_bootstrap: str, cassandra_session: Any) -> Iterator[Callable[..., SideJob]]:
    """Makes side jobs; stops them and drops their topic, keyspace and checkpoint afterwards."""
    jobs: list[SideJob] = []

    def make(name: str, overrides: dict[str, str] | None = None, topic: bool = True) -> SideJob:
        job = SideJob(name, overrides)
        # The job may only check its tables: set-up makes them and a writer role of its own.
        job.env.update({**set_up_side_keyspace(job.env), **(overrides or {})})
        if topic:
            producer.ensure_topic(config.load({**os.environ, **job.env}).kafka)
        jobs.append(job)
        return job

    yield make
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        for job in jobs:
            if job.process is not None:
                job.stop()
            drop_side_keyspace(job.env)
            if job.topic in admin.list_topics():
                admin.delete_topics([job.topic])
            subprocess.run(["rm", "-rf", str(job.folder)], check=False)
    finally:
        admin.close()


def rows(session: Any, job: SideJob, table: str = "created_users") -> int:
    """Rows in the job's table; -1 while Cassandra does not answer."""
    from cassandra import OperationTimedOut
    from cassandra.cluster import NoHostAvailable

    try:
        return count_when_ready(session, job.keyspace, table)
    except (NoHostAvailable, OperationTimedOut):
        return -1


def assert_every_acked_user_is_one_equal_row(
    session: Any, job: SideJob, feeder: Feeder, timeout: float = 300
) -> None:
    expected = feeder.acked
    assert len(expected) > 0
    job.wait_for(lambda: rows(session, job) >= len(expected), "rows for every user", timeout)
    columns = ", ".join(contract.FIELD_NAMES)
    stored = {
        row.id: row._asdict()
        for row in session.execute(f"SELECT {columns} FROM {job.keyspace}.created_users")
    }
    assert stored.keys() == expected.keys()  # nothing lost, nothing extra
    assert stored == expected  # field for field


def first_new_row(session: Any, job: SideJob, timeout: float) -> float:
    """Seconds until the job writes a row it had not written when this was called."""
    started = time.monotonic()
    job.wait_for(lambda: rows(session, job) >= 0, "answer from Cassandra", timeout)
    before = rows(session, job)
    job.wait_for(lambda: rows(session, job) > before, "new rows", timeout)
    return time.monotonic() - started


@contextmanager
def cassandra_frozen() -> Iterator[None]:
    """Cassandra stopped with SIGSTOP (it accepts connections and never answers: a wedged node
    or a partition) for the block, and woken afterwards whatever happened."""
    pid = services.named("cassandra").pid()
    assert pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_stalled_query_fails_and_its_supervisor_restarts_it(
    side_job: Callable[..., SideJob],
    kafka_bootstrap: str,
    cassandra_session: Any,
    user_pipeline_stays_healthy: None,
) -> None:
    job = side_job("stall", {"SPARK_STALL_SECONDS": "8"})
    job.start()
    with Feeder(kafka_bootstrap, job.topic, RATE) as feeder:
        first_new_row(cassandra_session, job, 60)
        with cassandra_frozen():  # the job's writes hang until their timeouts
            job.wait_for(lambda: job.restarts() >= 1, "restart by the supervisor", 120)
        first_new_row(cassandra_session, job, 180)
    assert_every_acked_user_is_one_equal_row(cassandra_session, job, feeder)
    assert "no progress for" in job.text()
    assert "restart 1" in job.text()


def test_sigterm_stops_the_job_within_30_s_while_a_write_is_retrying(
    side_job: Callable[..., SideJob],
    kafka_bootstrap: str,
    cassandra_session: Any,
    user_pipeline_stays_healthy: None,
) -> None:
    job = side_job("sigterm")
    job.start()
    with Feeder(kafka_bootstrap, job.topic, RATE) as feeder:
        first_new_row(cassandra_session, job, 60)
        with cassandra_frozen():
            job.wait_for(lambda: "write failed" in job.text(), "a failed write", 60)
            assert job.process is not None
            job.process.send_signal(signal.SIGTERM)
            try:
                status = job.process.wait(timeout=35)
            except subprocess.TimeoutExpired:
                pytest.fail(f"the job was still running 35 s after SIGTERM; see {job.log}")
    assert status == 0
    assert "job stopped (exit 0)" in job.text()  # the job's own status, not a SIGKILL
    # What it abandoned is replayed by the next run: nothing is lost.
    job.start()
    assert_every_acked_user_is_one_equal_row(cassandra_session, job, feeder)


def test_a_topic_created_under_the_job_is_read_and_oversize_values_become_dead_letters(
    side_job: Callable[..., SideJob], kafka_bootstrap: str, cassandra_session: Any
) -> None:
    job = side_job("topic", topic=False)
    job.start()  # the topic does not exist yet
    job.wait_for(lambda: NO_TOPIC_YET in job.text(), "the job to report no topic yet", 60)
    producer.ensure_topic(config.load({**os.environ, **job.env}).kafka)
    big = "x" * (contract.MAX_STRING_BYTES + 1)
    refused = [
        {**user(), "id": big},  # Cassandra refuses a partition key over 64 KiB
        {**user(), "address": big},
    ]
    with Feeder(kafka_bootstrap, job.topic, 200) as feeder:
        sender = KafkaProducer(bootstrap_servers=kafka_bootstrap, max_request_size=1_048_576)
        for record in refused:
            sender.send(job.topic, key=b"big", value=encode(record))
        sender.flush()
        sender.close()
        time.sleep(2)
    assert_every_acked_user_is_one_equal_row(cassandra_session, job, feeder)
    job.wait_for(lambda: rows(cassandra_session, job, "dead_letters") == 2, "two dead letters", 60)
    reasons = sorted(
        row.reason
        for row in cassandra_session.execute(f"SELECT reason FROM {job.keyspace}.dead_letters")
    )
    limit = contract.MAX_STRING_BYTES
    assert reasons == [
        f"too long for address: {limit + 1} bytes, at most {limit}",
        f"too long for id: {limit + 1} bytes, at most {limit}",
    ]
    assert job.restarts() == 0
