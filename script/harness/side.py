"""Stream jobs and load generators beside the shared stack (the benchmark's, the fault runs').

A ``SideJob`` is a stream job with a topic, keyspace, checkpoint, Spark UI port and log of its
own; leaving its ``with`` block stops it and drops all four, so a run leaves nothing behind. A
``LoadGen`` is one ``script.harness.loadgen`` process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pipeline import config, producer
from script.layout import DATA, LOGS, REPO, StackError
from script.pipeline_status import cassandra_session, checkpoint_offsets
from script.procs import memory_kb, pid_alive, port_open, process_tree, stop_tree
from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace
from script.services.stream import READY, STREAM_JOB, spawn_stream_job, stream_env

# The warm-up of a job started to test a behaviour (the suite's jobs, `./run.sh faults --short`):
# 15 of the warm-up's batches instead of the job's 200 (SPARK_WARM_UP_MESSAGES). The long
# warm-up serves the first batches' latency, which such runs do not measure; the benchmark's
# jobs keep the user's setting.
QUICK_WARM_UP_MESSAGES = 3_000


def warm_up_env(messages: int) -> dict[str, str]:
    """The setting that makes a job's warm-up stream ``messages`` synthetic users."""
    return {"SPARK_WARM_UP_MESSAGES": str(messages)}


QUICK_WARM_UP = warm_up_env(QUICK_WARM_UP_MESSAGES)

# Processes of the tools' own (load generator, classify timing): `./run.sh worker NAME ARGS`.
WORKER = [sys.executable, "-m", "script", "worker"]


def free_port() -> int:
    """A TCP port nobody listens on right now (the Spark UI of a side job)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batch_phases(log_text: str) -> list[dict[str, int]]:
    """``durationMs`` of each batch that read messages, with its ``numInputRows``, from the
    progress Spark logs as JSON after ``spark_stream.PROGRESS_MARKER`` (spread over lines); a
    report still being written when the log was read is left out."""
    from spark_stream import PROGRESS_MARKER

    decoder = json.JSONDecoder()
    phases = []
    at = log_text.find(PROGRESS_MARKER)
    while at >= 0:
        try:
            progress, end = decoder.raw_decode(log_text, at + len(PROGRESS_MARKER))
        except ValueError:  # cut short: the job is writing it
            end = at + len(PROGRESS_MARKER)
        else:
            if progress.get("numInputRows"):
                phases.append({**progress["durationMs"], "numInputRows": progress["numInputRows"]})
        at = log_text.find(PROGRESS_MARKER, end)
    return phases


class SideJob:
    """A stream job of the benchmark's own, from a fresh topic into a fresh keyspace."""

    def __init__(self, name: str, main: Path = STREAM_JOB, *, timings: bool = False) -> None:
        """``timings``: Spark logs each batch's progress to the job's log (``batch_timings``),
        which the user's job does not: only the parts that print the phases ask for it."""
        self.main = main  # spark_stream.py, or another query submitted the same way
        suffix = os.urandom(3).hex()
        self.name = f"bench-{name}-{suffix}"
        self.topic = self.name
        self.keyspace = f"bench_{name}_{suffix}"
        self.checkpoint = DATA / "bench" / self.name
        self.ui_port = free_port()
        self.log = LOGS / f"{self.name}.log"
        self.env = {
            "KAFKA_TOPIC": self.topic,
            "CASSANDRA_KEYSPACE": self.keyspace,
            "SPARK_CHECKPOINT_DIR": str(self.checkpoint),
            "SPARK_UI_PORT": str(self.ui_port),
            "SPARK_BATCH_TIMINGS": "true" if timings else "false",
        }
        self.settings = config.load({**os.environ, **self.env})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.current_log = self.log
        self._consumer: Any = None
        self._cluster: Any = None
        self._session: Any = None

    # --- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> SideJob:
        producer.ensure_topic(self.settings.kafka)
        # Its keyspace's schema and a writer role of its own, as set-up makes them.
        self.env.update(set_up_side_keyspace(self.env))
        self.settings = config.load({**os.environ, **self.env})
        return self

    def __exit__(self, *_exc: object) -> None:
        self.drop()

    def start(self) -> float:
        """Spawn the job (resuming from the checkpoint if there is one); return the wall time."""
        if self.proc is not None and self.proc.poll() is None:
            raise StackError(f"{self.name} is already running (pid {self.proc.pid})")
        # spawn_stream_job truncates its log: each restart writes a log of its own.
        log = self.log if not self.starts else self.log.with_suffix(f".{self.starts}.log")
        self.starts += 1
        self.current_log = log
        self.proc = spawn_stream_job(self.env, log, self.main)
        return time.time()

    def wait_ready(self, timeout: float = 300) -> float:
        """Wait until the job says it is ready (warmed up, query started); return that time."""
        deadline = time.monotonic() + timeout
        while READY not in self.current_log.read_text(errors="replace"):
            self._check_alive()
            if time.monotonic() > deadline:
                raise StackError(f"{self.name}: not ready after {timeout}s: see {self.current_log}")
            time.sleep(0.1)
        return time.time()

    def _check_alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise StackError(f"{self.name} exited: see {self.log} (and its .N.log restarts)")

    def stop(self) -> None:
        """SIGTERM: the job finishes its running batch, commits it and exits."""
        if self.proc is not None:
            stop_tree(self.name, self.proc.pid, timeout=60)
            self.proc.wait()

    def kill(self) -> None:
        """SIGKILL the job's whole process tree: no batch is finished or committed."""
        if self.proc is None:
            return
        for pid in process_tree(self.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        deadline = time.monotonic() + 30
        while port_open(self.ui_port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def batch_timings(self) -> list[dict[str, int]]:
        """Each batch's phases (ms) and messages as Spark logged them (SPARK_BATCH_TIMINGS), in
        the order they ran, from the job's current log."""
        return batch_phases(self.current_log.read_text(errors="replace"))

    def pss_mb(self) -> float:
        return memory_kb(self.proc.pid)[0] / 1024 if self.proc and pid_alive(self.proc.pid) else 0

    def drop(self) -> None:
        """Stop the job, drop its keyspace and topic, remove its checkpoint."""
        try:
            self.stop()
        finally:
            if self._consumer is not None:
                self._consumer.close()
            if self._cluster is not None:
                self._cluster.shutdown()
            drop_side_keyspace(self.env)
            drop_topic(self.settings, self.topic)
            shutil.rmtree(self.checkpoint, ignore_errors=True)

    # --- progress ----------------------------------------------------------------------

    def committed(self) -> tuple[int | None, int]:
        """(last committed batch, messages read by it) from the checkpoint."""
        batch, offsets = checkpoint_offsets(str(self.checkpoint), self.topic)
        return batch, sum(offsets.values())

    def end_offset(self) -> int:
        """Messages in the topic so far."""
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.settings.kafka.bootstrap_servers, request_timeout_ms=10000
            )
        parts = self._consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in parts]
        return sum(self._consumer.end_offsets(tps).values()) if tps else 0

    def lag(self) -> int:
        return max(0, self.end_offset() - self.committed()[1])

    def commit_time(self, batch: int) -> float:
        """Wall time the job committed ``batch`` (its commit file's modification time)."""
        return (self.checkpoint / "commits" / str(batch)).stat().st_mtime

    def wait_commit_after(self, batch: int | None, timeout: float = 300) -> tuple[int, float]:
        """Wait for a committed batch after ``batch``; return (its id, its commit wall time)."""
        deadline = time.monotonic() + timeout
        while True:
            now, _ = self.committed()
            if now is not None and (batch is None or now > batch):
                first = now if batch is None else batch + 1
                return first, self.commit_time(first)
            self._check_alive()
            if time.monotonic() > deadline:
                raise StackError(f"{self.name}: no batch committed after {batch} in {timeout}s")
            time.sleep(0.05)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every message in the topic is committed; False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.lag() > 0:
            self._check_alive()
            if time.monotonic() > deadline:
                return False
            time.sleep(0.25)
        return True

    # --- rows --------------------------------------------------------------------------

    def session(self) -> Any:
        if self._session is None:
            self._cluster, self._session = cassandra_session(self.settings.cassandra)
        return self._session

    def rows(self, since_ms: int | None = None, until_ms: int | None = None) -> list[tuple]:
        """(produced_at ms, write time µs) of the rows, optionally produced in [since, until)."""
        from cassandra.query import SimpleStatement

        where, params = "", ()
        if since_ms is not None and until_ms is not None:
            where, params = (
                " WHERE produced_at >= %s AND produced_at < %s ALLOW FILTERING",
                (
                    since_ms,
                    until_ms,
                ),
            )
        table = f"{self.keyspace}.{self.settings.cassandra.table}"
        query = SimpleStatement(
            f"SELECT produced_at, writetime(email) AS w FROM {table}{where}", fetch_size=5000
        )
        return [(r.produced_at, r.w) for r in self.session().execute(query, params, timeout=120)]


def drop_topic(settings: config.Settings, topic: str) -> None:
    """Delete a topic a side job made (if it was made)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        if topic in admin.list_topics():
            admin.delete_topics([topic])
    finally:
        admin.close()


class LoadGen:
    """One load generator process (``script.harness.loadgen``), started when constructed."""

    def __init__(
        self, topic: str, rate: float, *, seconds: float = 0, count: int = 0, tag: str = "bench"
    ) -> None:
        self.log = LOGS / f"{topic}.loadgen-{tag}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        cmd = [*WORKER, "loadgen", "--topic", topic]
        cmd += ["--rate", str(rate), "--seconds", str(seconds), "--count", str(count)]
        cmd += ["--tag", tag]
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=err,
                env={**stream_env(), "PYTHONPATH": str(REPO)},
                text=True,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # after the records are prepared
        if not line.startswith("started "):
            self.proc.wait()
            raise StackError(f"load generator did not start: see {self.log}")
        self.start_ms = int(line.split()[1])

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict[str, Any]:
        if self.running:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """The generator's report (see ``loadgen.run``), once it has flushed and exited."""
        out, _ = self.proc.communicate(timeout=timeout)
        lines = out.strip().splitlines()
        if self.proc.returncode != 0 or not lines:
            raise StackError(f"load generator failed (status {self.proc.returncode}): {self.log}")
        report = json.loads(lines[-1])
        if report["failed"]:
            raise StackError(f"load generator: {report['failed']} sends failed: {report['errors']}")
        return report
