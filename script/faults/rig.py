"""The fault runs' equipment: a supervised side job, a feeder that keeps what Kafka acknowledged,
and the tally that compares what was sent with what Cassandra holds."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline import config, contract, producer
from pipeline.formatting import Skip, format_user
from script import stack, supervise
from script.harness.side import drop_topic, free_port
from script.layout import DATA, LOGS, REPO, StackError
from script.pipeline_status import cassandra_session, checkpoint_batches, checkpoint_offsets
from script.procs import pid_alive, process_tree
from script.services import Service
from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace
from script.services.stream import READY, stream_command, stream_env


@dataclass
class Outcome:
    """One row of the fault table."""

    scenario: str
    tried: int = 0  # how many times the fault was applied
    sent: int = 0  # users Kafka acknowledged (or the producer reported sent)
    rows: int = 0  # rows in the job's users table
    dead_letters: int = 0
    lost: int = 0  # sent but not stored, or stored but not equal field for field
    extra: int = 0  # stored but never sent
    recover_s: float | None = None  # from the fault's end to the next batch written
    note: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)  # the soak's PSS samples
    error: str = ""  # why the scenario gave up before counting

    @property
    def ok(self) -> bool:
        return not self.error and self.lost == 0 and self.extra == 0

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def say(message: str) -> None:
    print(f"[faults] {message}", flush=True)


class SupervisedJob:
    """A stream job of its own under the supervisor (`./run.sh supervise`), as `./run.sh stream`
    runs the user's: own topic, keyspace, checkpoint, Spark UI port, log and state file."""

    def __init__(
        self, name: str, overrides: dict[str, str] | None = None, topic: bool = True
    ) -> None:
        self.create_topic = topic  # False: a job that starts before its topic exists
        suffix = uuid.uuid4().hex[:8]
        self.name = f"faults-{name}-{suffix}"
        self.topic = self.keyspace = f"faults_{name.replace('-', '_')}_{suffix}"
        self.folder = DATA / "faults" / self.name
        self.log = LOGS / f"{self.name}.log"
        self.state = self.folder / "supervisor.json"
        self.env = {
            **stream_env(),
            "KAFKA_TOPIC": self.topic,
            "CASSANDRA_KEYSPACE": self.keyspace,
            "SPARK_CHECKPOINT_DIR": str(self.folder / "checkpoint"),
            "SPARK_UI_PORT": str(free_port()),
            **(overrides or {}),
        }
        self.settings = config.load(self.env)
        self.process: subprocess.Popen[bytes] | None = None
        self._since = 0
        self._cluster: Any = None
        self._session: Any = None

    def __enter__(self) -> SupervisedJob:
        if self.create_topic:
            producer.ensure_topic(self.settings.kafka)
        self.env.update(set_up_side_keyspace(self.env))  # its schema, and a role of its own
        self.settings = config.load(self.env)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop()

    def start(self, timeout: float = 300) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._since = self.log.stat().st_size if self.log.exists() else 0
        command = [sys.executable, "-m", "script", "supervise", "--state", str(self.state), "--"]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*command, *stream_command(self.env)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        self.wait_for(lambda: READY in self.text(), "readiness", timeout)

    def text(self) -> str:
        """What the supervisor and the job logged since the latest start."""
        with self.log.open("rb") as log:
            log.seek(self._since)
            return log.read().decode(errors="replace")

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float) -> float:
        """Seconds until ``condition`` held; StackError naming the log when it does not."""
        started = time.monotonic()
        while not condition():
            if self.process is None or self.process.poll() is not None:
                raise StackError(f"{self.name}: the supervisor exited; see {self.log}")
            if time.monotonic() - started > timeout:
                raise StackError(f"{self.name}: no {what} after {timeout:.0f} s; see {self.log}")
            time.sleep(0.2)
        return time.monotonic() - started

    def restarts(self) -> int:
        state = supervise.read_state(self.state)
        return state.restarts if state else 0

    def job_pid(self) -> int | None:
        """The supervised job's own pid (spark-submit's JVM), not the supervisor's."""
        state = supervise.read_state(self.state)
        return state.job_pid if state and state.job_pid and pid_alive(state.job_pid) else None

    def kill_job(self) -> None:
        """SIGKILL the job's process tree (not the supervisor): nothing finished or committed."""
        pid = self.job_pid()
        if pid is None:
            raise StackError(f"{self.name}: no job running to kill; see {self.log}")
        for p in process_tree(pid):
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 60) -> None:
        """SIGTERM the supervisor, as `./run.sh stream stop` does."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(os.getpgid(self.process.pid), signal.SIGKILL)
                self.process.wait()

    def drop(self) -> None:
        """Stop the job; drop its keyspace and topic; remove its checkpoint and state."""
        try:
            self.stop()
        finally:
            try:
                if self._cluster is not None:
                    self._cluster.shutdown()
                drop_side_keyspace(self.env)
            finally:
                drop_topic(self.settings, self.topic)
                shutil.rmtree(self.folder, ignore_errors=True)

    # --- what it wrote ------------------------------------------------------------------

    def session(self) -> Any:
        if self._session is None:
            self._cluster, self._session = cassandra_session(self.settings.cassandra)
        return self._session

    def count(self, table: str | None = None) -> int:
        """Rows in the job's table (default: the users); -1 while Cassandra cannot answer."""
        from cassandra import InvalidRequest, OperationTimedOut, ReadTimeout
        from cassandra.cluster import NoHostAvailable

        name = table or self.settings.cassandra.table
        try:
            query = f"SELECT COUNT(*) FROM {self.keyspace}.{name}"
            return self.session().execute(query, timeout=60).one()[0]
        except InvalidRequest:
            return 0  # not created yet
        except (NoHostAvailable, OperationTimedOut, ReadTimeout):
            return -1

    def stored(self) -> dict[str, dict[str, Any]]:
        """Every row of the users table, by id."""
        from cassandra.query import SimpleStatement

        columns = ", ".join(contract.FIELD_NAMES)
        table = f"{self.keyspace}.{self.settings.cassandra.table}"
        query = SimpleStatement(f"SELECT {columns} FROM {table}", fetch_size=5000)
        return {r.id: r._asdict() for r in self.session().execute(query, timeout=120)}

    def batches(self, log: str) -> set[int]:
        """The batch ids in the job's checkpoint ``log``: ``offsets`` (planned) or ``commits``
        (written, then committed)."""
        return checkpoint_batches(self.env["SPARK_CHECKPOINT_DIR"], log)

    def next_batch(self, timeout: float) -> float:
        """Seconds until the job has written and committed a batch it planned after this was
        called: rows new since then are in Cassandra, at the job's consistency. Read from the
        checkpoint, not by counting the table: a ``COUNT(*)`` over a loaded ring with a node
        down timed out for 300 s while the job went on writing. (At most a batch later than the
        first new row.)"""
        started = time.monotonic()
        planned = self.batches("offsets")
        self.wait_for(lambda: bool(self.batches("commits") - planned), "new rows", timeout)
        return time.monotonic() - started

    def end_offsets(self) -> dict[int, int]:
        """The topic's end offset of each partition now."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka.bootstrap_servers)
        try:
            parts = consumer.partitions_for_topic(self.topic) or set()
            ends = consumer.end_offsets([TopicPartition(self.topic, p) for p in parts])
        finally:
            consumer.close()
        return {tp.partition: end for tp, end in ends.items()}

    def behind(self, ends: dict[int, int]) -> int:
        """Messages before ``ends`` (offsets per partition) the job has not committed yet."""
        _, committed = checkpoint_offsets(self.env["SPARK_CHECKPOINT_DIR"], self.topic)
        return sum(max(0, end - committed.get(part, 0)) for part, end in ends.items())

    def lag(self) -> int:
        """Messages in the topic the job has not committed yet."""
        return self.behind(self.end_offsets())

    def wait_drained(self, timeout: float = 300) -> None:
        self.wait_for(lambda: self.lag() == 0, "catching up with the topic", timeout)


def users(count: int, seed: str = "faults") -> Iterator[dict[str, Any]]:
    """Formatted users as the producer sends them (the stand-in's), each with a fresh id."""
    from standin import generate_users

    formatted = (format_user(raw, 0) for raw in generate_users(seed, 1, 500))
    pool = [u for u in formatted if not isinstance(u, Skip)]
    for n in range(count):
        yield {**pool[n % len(pool)], "id": str(uuid.uuid4())}


class Feeder:
    """Sends users to ``topic`` at ``rate`` per second from a thread; keeps those Kafka acked."""

    def __init__(self, settings: config.Settings, rate: float) -> None:
        from kafka import KafkaProducer

        self.topic, self.rate = settings.kafka.topic, rate
        self.producer = KafkaProducer(
            bootstrap_servers=settings.kafka.bootstrap_servers,
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

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _on_ack(self, record: dict[str, Any]) -> Callable[[Any], None]:
        def acked(_metadata: Any) -> None:
            with self._lock:
                self.acked[record["id"]] = record

        return acked

    def _on_error(self, _exc: BaseException) -> None:
        with self._lock:
            self.failed += 1

    def _run(self) -> None:
        source = users(10**9)
        started, sent = time.monotonic(), 0
        while not self._done.is_set():
            due = int((time.monotonic() - started) * self.rate)
            for _ in range(due - sent):
                record = {**next(source), "produced_at": time.time_ns() // 1_000_000}
                try:
                    future = self.producer.send(
                        self.topic, key=record["id"].encode(), value=producer.encode_value(record)
                    )
                except Exception:  # noqa: BLE001 - a send the broker never took: counted
                    self._on_error(RuntimeError("send refused"))
                    continue
                future.add_callback(self._on_ack(record))
                future.add_errback(self._on_error)
            sent = max(sent, due)
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop sending; wait until every send is acknowledged or failed."""
        if not self._done.is_set():
            self._done.set()
            self._thread.join()
            self.producer.flush(timeout=180)
            self.producer.close(timeout=30)


def tally(outcome: Outcome, job: SupervisedJob, expected: dict[str, dict[str, Any]]) -> Outcome:
    """Fill in sent, rows, dead letters, lost and extra: ``expected`` (by id) against the table."""
    stored = job.stored()
    outcome.sent = len(expected)
    outcome.rows = len(stored)
    outcome.dead_letters = max(0, job.count(job.settings.cassandra.dead_letter_table))
    outcome.lost = sum(1 for i, record in expected.items() if stored.get(i) != record)
    outcome.extra = len(stored.keys() - expected.keys())
    return outcome


def restart(service: Service, down_seconds: float) -> float:
    """Stop ``service``, wait ``down_seconds``, start it; the monotonic time it answered again."""
    stack.stop_service(service)
    time.sleep(down_seconds)
    stack.start_service(service)  # returns once its readiness probe passes
    return time.monotonic()
