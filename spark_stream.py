"""Stream user records from Kafka into Cassandra, routing malformed messages to dead letters.

    spark-submit --master 'local[*]' --driver-memory 1g \\
        --jars "$(python -m pipeline.spark_jars)" spark_stream.py

Reads as one sentence: readStream (Kafka) -> ``parsing.classify`` -> writeStream (foreachBatch:
valid rows to ``CASSANDRA_TABLE``, rejected ones with their reason to
``CASSANDRA_DEAD_LETTER_TABLE``) -> run until SIGTERM. Every setting comes from the environment
(``pipeline/config.py`` holds the defaults; ``--help`` lists them).

Real time: the default trigger starts the next micro-batch as soon as the last one is
committed, at most ``SPARK_MAX_OFFSETS_PER_TRIGGER`` messages each, and a batch is one Spark job
(the strict parse runs in Python on Arrow batches, see ``pipeline/parsing.py``; rejected
messages cost a second job only when there are any). Before the query starts, the job streams
``SPARK_WARM_UP_MESSAGES`` synthetic users down the same path (a Kafka topic of its own, the
parser, a Cassandra table of its own), so its first real batches run warm: a new JVM runs its
first batches several times slower than later ones.

Self-healing: a write that fails (Cassandra or Kafka gone) is retried with backoff while the
batch is in flight, in the same process: the job waits for Cassandra (it asks with a login of
its own every second, and tries the connector again once it answers); the connector notices a
dead Cassandra in seconds and reconnects within two seconds of it answering. When the query
shows no sign of life (no progress report, no batch begun, no write attempt ended) for
``SPARK_STALL_SECONDS`` (five times that until its first batch begins: a busy machine starts
slowly) the job exits 1, for its supervisor (``./run.sh stream``, Compose's restart policy) to
start it again: the last resort for a write stuck where it cannot be interrupted.
The job reads the topic by pattern, so a topic that does not exist yet is waited for, and one
created under the running query is picked up from its first offset.

Exactly-once effect: the Kafka offsets of each micro-batch are in the checkpoint
(``SPARK_CHECKPOINT_DIR``), so a restarted job resumes after the last committed batch and at
worst replays the one it was in. A replay changes nothing: users are keyed by their stable
``id`` and dead letters by (topic, partition, offset), and Cassandra writes are upserts.

The job logs in as its own role (``CASSANDRA_USERNAME``), which may only read and write the
keyspace's rows: set-up (``./run.sh up``, Compose's ``cassandra-init``) creates the keyspace,
the tables and the role with the admin login (``pipeline/cassandra_schema.py``). On start the
job checks that both tables have the contract's columns and exits with a one-line reason when
Cassandra is down (status 1: worth another try) or refuses the login, or a setting, the
connector jars or a table is missing or wrong (status 2: a restart cannot help; a missing table
or column names the set-up to run). SIGTERM or SIGINT lets the
running batch finish (or abandons one that is retrying) and stops the job within 30 s, status 0.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from py4j.java_collections import MapConverter
from py4j.protocol import Py4JError, Py4JJavaError
from pyspark.errors import AnalysisException, StreamingQueryException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipeline import cassandra_schema, config, contract, parsing
from pipeline.config import CassandraSettings, Settings

log = logging.getLogger("spark_stream")

CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"
KAFKA_FORMAT = "kafka"

# Connector write settings, chosen for throughput on a small local Cassandra; each is per
# DataFrame write, so `--conf` cannot override them by accident. The consistency level is
# CASSANDRA_WRITE_CONSISTENCY's (``write_options``).
WRITE_OPTIONS: dict[str, str] = {
    # Every row has its own partition key (the user id), so grouping by partition gains
    # nothing; grouping rows whose replicas are the same nodes into unlogged batches of up to
    # 32 KiB (about 70 users) does: each node gets one request per batch instead of one per
    # row, which on this 2-core machine writes 1.5-2x the rows per second of single-row
    # inserts. Cassandra counts such a batch as 65-90 KiB: over its default batch size limits
    # (a warning at 5 KiB, a refusal at 50), under the stack's (128 and 640 KiB,
    # stack/cassandra.yaml and Compose's cassandra service).
    "spark.cassandra.output.batch.grouping.key": "replica_set",
    "spark.cassandra.output.batch.size.rows": "auto",
    "spark.cassandra.output.batch.size.bytes": "32768",
    "spark.cassandra.output.concurrent.writes": "8",
}


def write_options(cassandra: CassandraSettings) -> dict[str, str]:
    """WRITE_OPTIONS with the write consistency (default LOCAL_QUORUM: a batch is committed
    only once a majority of each row's replicas has it, so one node may die without a row
    lost, and a quorum read sees every row)."""
    return {
        **WRITE_OPTIONS,
        "spark.cassandra.output.consistency.level": cassandra.write_consistency,
    }


# The connector's session: notice a dead Cassandra in seconds rather than minutes (its defaults
# are a 120 s request timeout, tried 60 times), and reconnect within two seconds of it answering
# again (default: up to a minute). The session stays open through an idle hour: opening a new
# one (connection, metadata, prepared statements) added 0.3 s to the first batch after each idle
# minute, which is what users see when they trigger the DAG in the UI on a quiet stack. A failed
# session is still closed at once (`_renew_session` evicts the unused ones).
CONNECTOR_CONF: dict[str, str] = {
    "spark.cassandra.connection.timeoutMS": "5000",
    "spark.cassandra.read.timeoutMS": "10000",  # every request's timeout, writes included
    "spark.cassandra.query.retry.count": "2",
    "spark.cassandra.connection.reconnectionDelayMS.min": "500",
    "spark.cassandra.connection.reconnectionDelayMS.max": "2000",
    "spark.cassandra.connection.keepAliveMS": "3600000",
}

# Spark itself: `query.stop()` gives up on a stuck batch after 10 s instead of waiting forever.
# The query's input and processing rates and batch duration are gauges on the Spark UI's
# `/metrics/json/`, for the pipeline page (script/monitor).
SESSION_CONF: dict[str, str] = {
    "spark.sql.streaming.stopTimeout": "10000",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.streaming.metricsEnabled": "true",
    # Python workers without Spark's zips and jar on their path (pipeline/spark_daemon.py).
    "spark.python.daemon.module": "pipeline.spark_daemon",
    # Each batch writes two checkpoint files. Through Hadoop's FileContext on a local disk
    # that started ten processes per file (`readlink` for every path it resolves, `chmod` for
    # the file and its checksum: Hadoop's native library is not there): most of each commit's
    # 45 ms. Through the FileSystem API, without checksum files, it is one `chmod`.
    "spark.sql.streaming.checkpointFileManagerClass": (
        "org.apache.spark.sql.execution.streaming.FileSystemBasedCheckpointFileManager"
    ),
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
    # spark-submit has cached a checksumming local file system (for `--jars`) before this
    # session exists: without this, the checkpoint would get that one, not the one above.
    "spark.hadoop.fs.file.impl.disable.cache": "true",
    # The plan each SQL execution posts for the UI: Spark's default ("formatted") numbered every
    # operator of the batch's two plans, 17 % of the query thread's CPU at 1,000 users/s (JFR on
    # the job); "simple" is the physical plan's tree as it is.
    "spark.sql.ui.explainMode": "simple",
}


def session_conf(stream: config.StreamSettings) -> dict[str, str]:
    """SESSION_CONF with how often an idle query asks Kafka for new offsets
    (SPARK_IDLE_POLL_MS; Spark's default of 10 ms costs an idle stack a fifth of a core)."""
    return {**SESSION_CONF, "spark.sql.streaming.pollingDelay": f"{stream.idle_poll_ms}ms"}


# The Kafka source: a broker that is away is retried for a while (the stall watchdog bounds the
# whole), and an executor's fetch gives up after 10 s (default 120 s) so the batch is retried.
KAFKA_OPTIONS: dict[str, str] = {
    "includeHeaders": "true",  # the schema-id header, for dead letters
    "kafkaConsumer.pollTimeoutMs": "10000",
    "fetchOffset.numRetries": "10",
    "fetchOffset.retryIntervalMs": "1000",
    "kafka.request.timeout.ms": "10000",
    "kafka.default.api.timeout.ms": "10000",
    # Spark asks a partition's consumer for its offset range after every poll. The broker
    # answers that after the fetch the consumer sent ahead, which it holds until new messages
    # come or `fetch.max.wait.ms` (default 500 ms) passes: when the load stops, the last batch
    # waited that long twice for each partition. Answered at once, it does not wait.
    "kafka.fetch.max.wait.ms": "0",
}

# The warm-up's micro-batches: at most this many messages each, below a batch's worth at the
# first run's pace (2,000 users/s come in batches of 300-900). What a new JVM compiles late is
# what runs once per batch (planning, the connector's write set-up), so it is the number of
# batches that warms it: 20 of 2,000 left the first run's p95 at 0.71-0.83 s, 80 of 500 at
# 0.51-0.65 s (a stack started from nothing, development machine); with the table loaded once,
# the first run after a job's start had p95 0.46 / 0.37 / 0.38 s with 80 of 500 and 0.30 /
# 0.29 s with 200 of 200 (the warm-up 23 -> 32 s). Its topic keeps messages an hour at most,
# should the job die before it deletes the topic, and takes a write that one replica has.
WARM_UP_BATCH = 200
# What the pipeline page reads from the job's Spark UI (script/monitor/collect.py).
UI_PATHS = ("/api/v1/applications", "/metrics/json/")
WARM_UP_TOPIC_CONFIGS = {"retention.ms": "3600000", "min.insync.replicas": "1"}

# Exit statuses, for the supervisor: 0 stopped on request, 1 worth another try, 2 needs a fix.
EXIT_STOPPED, EXIT_RETRY, EXIT_FIX = 0, 1, 2

# A failed write is tried again after these many seconds, doubling up to the last.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)

# While Cassandra does not answer, a line saying the job waits for it this often (seconds).
CASSANDRA_WAIT_LOG_SECONDS = 10.0

# How long SIGTERM waits for the running batch before interrupting it (it is then replayed on
# restart); with `query.stop()`'s 10 s and Spark's own stop, the job is gone within 30 s.
STOP_GRACE_SECONDS = 12.0
# Until its first batch begins a job is starting (the JVM, the Python workers, the connector's
# session, a backlog): on a busy machine that takes many times a batch's time.
START_STALL_FACTOR = 5
# How often the main thread asks the query whether it lives and what it last reported (three
# calls into the JVM): a stall is judged in tens of seconds, and a stop asked wakes it at once.
# Once a second, that was a quarter of a percent of a core in an idle job (docs/benchmark.md).
WATCH_SECONDS = 5.0

# The JIT compilers' threads as Linux names them (15 characters), and their nice value once the
# job has warmed up (``compile_in_the_background``).
COMPILER_THREADS = ("C1 CompilerThre", "C2 CompilerThre")
BACKGROUND_NICE = 19


class PreparedAppend:
    """``frame.where(condition).select(columns)`` appended to a Cassandra table, with what
    never changes from one batch to the next made in the JVM once: the expressions, the write's
    options and the table. Through the DataFrame API each column and each option is a round
    trip to the JVM, about 40 a batch (a sixth of a batch's time at 1,000 users/s, py-spy on
    the job), and each write loads the table anew, for which the connector refreshes its
    driver's schema metadata (13 requests to Cassandra). Here the table is loaded by the first
    write (a write attempt, so retried like one) and each batch's plan is what
    ``DataFrameWriter.save`` builds for an append: ``AppendData.byName`` on it.
    """

    def __init__(
        self,
        spark: SparkSession,
        selection: tuple[Column, list[Column]],
        options: dict[str, str],
    ) -> None:
        condition, columns = selection
        gateway = spark.sparkContext._gateway
        assert gateway is not None
        self._jvm = gateway.jvm
        self._session = spark._jsparkSession
        self._condition = condition._jc
        self._columns = self._jvm.PythonUtils.toSeq([c._jc for c in columns])
        self._options = MapConverter().convert(options, gateway._gateway_client)
        self._write_options = self._jvm.PythonUtils.toScalaMap(self._options)
        self._append_data = self._jvm.org.apache.spark.sql.catalyst.plans.logical.AppendData
        self._dataset = self._jvm.org.apache.spark.sql.Dataset
        self._relation: Any = None

    def __call__(self, frame: DataFrame) -> None:
        if self._relation is None:
            self._relation = self._load_table()
        rows = frame._jdf.where(self._condition).select(self._columns)
        plan = self._append_data.byName(self._relation, rows.logicalPlan(), self._write_options)
        self._dataset.ofRows(self._session, plan)  # runs the command: the batch's Spark job

    def _load_table(self) -> Any:
        jvm = self._jvm
        v2 = jvm.org.apache.spark.sql.execution.datasources.v2
        options = jvm.org.apache.spark.sql.util.CaseInsensitiveStringMap(self._options)
        none = jvm.scala.Option.empty()
        table = v2.DataSourceV2Utils.getTableFromProvider(
            jvm.org.apache.spark.sql.cassandra.DefaultSource(), options, none
        )
        return v2.DataSourceV2Relation.create(table, none, none, options)


class ConnectorMissing(RuntimeError):
    """A Spark data source (Kafka or Cassandra) is not on the classpath."""


# Problems found before the query starts: logged as one line naming the fix. A restart may
# cure the first kind (Cassandra not up yet), never the second.
TRANSIENT_ERRORS = (cassandra_schema.CassandraUnavailable,)
FATAL_ERRORS = (
    config.ConfigError,
    cassandra_schema.LoginRefused,
    cassandra_schema.SchemaMismatch,
    cassandra_schema.SchemaMissing,
    ConnectorMissing,
)


class CassandraSink:
    """The foreachBatch function: write a classified micro-batch's two halves, log the counts.

    ``classify`` is the stream's transform with this sink's counters attached: the Python
    workers count each batch's messages and rejects, so writing the valid rows is the batch's
    only Spark job unless something was rejected. A failed write is retried with backoff until
    it succeeds or ``stop`` is set; the job's watchdog bounds how long that may take.
    """

    def __init__(self, spark: SparkSession, cassandra: CassandraSettings, stop: threading.Event):
        self._cassandra = cassandra
        self._stop = stop
        self._spark = spark
        # Bumped after a failed write: the next one gets a session of its own (``_options``).
        self._session_generation = 0
        self._append_valid = self._prepare_append()
        self._jvm = spark.sparkContext._jvm
        self._messages = spark.sparkContext.accumulator(0)
        self._rejected = spark.sparkContext.accumulator(0)
        self._idle = threading.Event()
        self._idle.set()
        self.last_batch_id: int | None = None
        # When a batch began or a write attempt ended: a sign of life for the watchdog (a write
        # that waits for Cassandra fails and is tried again, a stuck one never returns).
        self.alive_at = time.monotonic()
        self.begun = False  # a batch has begun: the job has started

    def classify(self, kafka: DataFrame) -> DataFrame:
        messages, rejected = self._messages, self._rejected

        def count(batch_messages: int, batch_rejected: int) -> None:
            messages.add(batch_messages)
            rejected.add(batch_rejected)

        return parsing.classify(kafka, count)

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self._idle.clear()
        self.alive_at = time.monotonic()
        self.begun = True
        try:
            self._write_retrying(batch, batch_id)
            self.last_batch_id = batch_id
        finally:
            self._idle.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no batch is being written; False if one still is after ``timeout``."""
        return self._idle.wait(timeout)

    def _write_retrying(self, classified: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        for attempt in itertools.count(1):
            try:
                rows_in, rejected = self._write(classified)
                break
            except AnalysisException:  # a plan or schema problem: no retry will change it
                raise
            except Exception as exc:  # noqa: BLE001 - retried until stop, then re-raised
                self.alive_at = time.monotonic()
                if renews_session(attempt):
                    self._renew_session()
                if not self._stop.is_set():
                    delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS)) - 1]
                    log.warning(
                        "batch %d: write failed (attempt %d: %s); retrying in %.1f s",
                        batch_id,
                        attempt,
                        write_failure(exc),
                        delay,
                    )
                    self._stop.wait(delay)
                    self._wait_for_cassandra(batch_id)
                if self._stop.is_set():  # asked to stop, before or while waiting
                    log.warning("batch %d: abandoned while stopping (it is replayed)", batch_id)
                    raise
        log.info(
            "batch %d: %d rows in, %d written, %d rejected, %.2f s",
            batch_id,
            rows_in,
            rows_in - rejected,
            rejected,
            time.monotonic() - started,
        )

    def _wait_for_cassandra(self, batch_id: int) -> None:
        """Return once Cassandra answers a login of the job's (or ``stop`` is set).

        The connector is not tried again while Cassandra is away: a write begun then may wait
        where it cannot be interrupted. Each try that fails is a sign of life for the watchdog:
        the job waits for Cassandra in the same process, however long it is away.
        """
        began = logged = time.monotonic()
        away = False
        while not self._stop.is_set():
            try:
                cassandra_schema.connect(self._cassandra, connect_timeout=5).cluster.shutdown()
            except cassandra_schema.LoginRefused:
                break  # it answers: the write's own failure says the rest
            except cassandra_schema.CassandraUnavailable as exc:
                away = True
                self.alive_at = time.monotonic()
                if self.alive_at - logged >= CASSANDRA_WAIT_LOG_SECONDS:
                    log.warning("batch %d: waiting for Cassandra (%s)", batch_id, first_line(exc))
                    logged = self.alive_at
                self._stop.wait(1.0)
            else:
                break
        if away and not self._stop.is_set():
            # The failed write's session saw every node go: renew it once more now that
            # Cassandra answers, so the next write begins with a session that sees it.
            self._renew_session()
            self.alive_at = time.monotonic()
            log.info(
                "batch %d: Cassandra answers again after %.0f s; writing",
                batch_id,
                self.alive_at - began,
            )

    def _write(self, classified: DataFrame) -> tuple[int, int]:
        """Write the batch; return (messages, rejected)."""
        messages, rejected = self._messages.value, self._rejected.value
        self._append_valid(classified)
        messages, rejected = self._messages.value - messages, self._rejected.value - rejected
        if rejected:
            self._append(parsing.rejected_rows(classified), self._cassandra.dead_letter_table)
        return messages, rejected

    def _options(self, table: str) -> dict[str, str]:
        return {
            "keyspace": self._cassandra.keyspace,
            "table": table,
            **write_options(self._cassandra),
            # The connector keeps one session per distinct connection settings; this one,
            # a millisecond more per generation, makes the next write's session a new one.
            "spark.cassandra.connection.keepAliveMS": str(
                int(CONNECTOR_CONF["spark.cassandra.connection.keepAliveMS"])
                + self._session_generation
            ),
        }

    def _prepare_append(self) -> PreparedAppend:
        return PreparedAppend(
            self._spark, parsing.valid_selection(), self._options(self._cassandra.table)
        )

    def _renew_session(self) -> None:
        """Let the next write open a new connector session instead of the failed one's.

        A session that asked for the schema while its node was away can stay stuck: the Java
        driver (4.x) never clears a schema refresh that failed before it began, so every later
        one waits for it forever, uninterruptibly (seen here as a write hanging in
        ``Session.refreshSchema`` after Cassandra came back, until the watchdog restarted the
        JVM; the same bug is scylladb/java-driver#841). The old session is closed once no
        write holds it (``evictCache``, and the connector's keep-alive).
        """
        self._session_generation += 1
        self._append_valid = self._prepare_append()
        self._jvm.com.datastax.spark.connector.cql.CassandraConnector.evictCache()

    def _append(self, rows: DataFrame, table: str) -> None:
        rows.write.format(CASSANDRA_FORMAT).options(**self._options(table)).mode("append").save()

    def warm_up(self, spark: SparkSession, settings: Settings) -> None:
        """Make the first real batches run warm: stream ``SPARK_WARM_UP_MESSAGES`` synthetic
        users through the job's own path (``warm_up_stream``), then classify two messages and
        write the (zero) valid rows to the users' table (``_warm_up_table``): the Python
        workers run, the connector's session is open, and the table is loaded before the
        first batch.

        A warm-up that fails (Kafka or Cassandra away, say) is logged and skipped: the job
        then runs cold, and the query waits for what is away as it always does.
        """
        messages = settings.stream.warm_up_messages
        began = time.monotonic()
        try:
            if messages:
                warm_up_stream(
                    spark, settings, self._options(self._cassandra.warm_up_table), self._stop
                )
            self._warm_up_table(spark)
        except Exception as exc:  # noqa: BLE001 - a cold job is better than none
            log.warning("warm-up skipped (%s): the first batches run cold", write_failure(exc))
            return
        if messages:
            log.info(
                "warmed up in %.1f s: %d synthetic users through topic %s into %s.%s",
                time.monotonic() - began,
                messages,
                settings.kafka.warm_up_topic,
                self._cassandra.keyspace,
                self._cassandra.warm_up_table,
            )

    def _warm_up_table(self, spark: SparkSession) -> None:
        """Classify two messages and append the (zero) valid rows to the users' table: the
        first write to a table loads it (the connector reads its schema), which the warm-up's
        scratch table does not do for this one. Measured: the first batch after the warm-up
        took 0.57 s for 1,198 rows, the next ones 0.1-0.3 s."""
        sample = spark.range(2, numPartitions=2).select(
            F.lit("warm-up").alias("topic"),
            F.lit(0).alias("partition"),
            F.col("id").alias("offset"),
            F.current_timestamp().alias("timestamp"),
            F.lit(None).cast("binary").alias("key"),
            F.lit(bytearray(b"{}")).alias("value"),
            F.lit(None).cast(parsing.KAFKA_SOURCE_SCHEMA["headers"].dataType).alias("headers"),
        )
        self._append_valid(parsing.classify(sample))


def warm_up_ui(spark: SparkSession) -> None:
    """Ask the job's own Spark UI what the pipeline page asks (``UI_PATHS``) once, before
    the users come: its first answer loads the UI's REST API, which took a core for about a
    second (its SparkUI thread 0.35 of a core over the first run's seconds 3-5, measured per
    thread from /proc) when the page's reader asked first, in the middle of the first run.
    A UI that does not answer is logged and left alone."""
    url = spark.sparkContext.uiWebUrl
    if not url:
        return
    began = time.monotonic()
    try:
        for path in UI_PATHS:
            with urllib.request.urlopen(f"{url}{path}", timeout=10) as answer:
                answer.read()
    except OSError as exc:
        log.warning("the Spark UI did not answer (%s): the page's first look loads it", exc)
        return
    log.info("the Spark UI's REST API answered in %.1f s", time.monotonic() - began)


def compile_in_the_background(spark: SparkSession) -> None:
    """Put the JIT compilers' threads of this job's JVM at nice ``BACKGROUND_NICE`` once the
    job has warmed up (Linux; lowering a thread's priority needs no privilege): from then on
    they take what the batches' threads and the other services leave of the cores.

    Through the first run after a job's start its C2 thread took 0.3-0.6 of a core (per thread
    from /proc, 2 cores), more than the batches' own threads, and the first run's p95 was 0.47 s;
    with the compilers at nice 19 after the warm-up, 0.28 s. Not from the JVM's start: the
    warm-up is there to compile what a batch runs, and at nice 19 its compiling waits behind
    the warm-up's own busy threads (restarted beside ``stress-ng --cpu 4``: warm in 59.2 s
    with the compilers at 19 from the start, 55.3 s this way)."""
    try:
        pid = spark._jvm.java.lang.ProcessHandle.current().pid()
    except Py4JError as exc:
        log.warning("the JVM's pid is unknown (%s): its compilers stay at nice 0", exc)
        return
    reniced = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            if (task / "comm").read_text().startswith(COMPILER_THREADS):
                os.setpriority(os.PRIO_PROCESS, int(task.name), BACKGROUND_NICE)
                reniced += 1
        except OSError:  # the thread ended, or no /proc (not Linux)
            continue
    log.info("the JVM's %d compiler threads now run at nice %d", reniced, BACKGROUND_NICE)


def warm_up_stream(
    spark: SparkSession, settings: Settings, write_options: dict[str, str], stop: threading.Event
) -> None:
    """Stream ``SPARK_WARM_UP_MESSAGES`` synthetic users as the job streams users: written to
    a topic of the job's own (``KafkaSettings.warm_up_topic``, deleted after), read by the
    same Kafka source, classified, and appended through the connector to the scratch table
    (``CassandraSettings.warm_up_table``) with ``write_options``; each batch begins as soon
    as the last one ends.

    The JVM loads and compiles what a batch runs, Python starts its workers, the connector
    opens its session, and Cassandra's own write path warms up too. Measured on 2 cores with
    40,000 users sent at 2,000/s right after the job was ready: without it the first batch
    took 1.8-2.4 s and the users' latency was p50 0.79 s, p95 3.10 s; with 40,000 warm-up
    messages (about 11 s more before the job is ready), 0.3 s and p50 0.35 s, p95 0.57 s.
    Raises when it fails, is stopped, or takes longer than a job may take to start.
    """
    kafka, stream = settings.kafka, settings.stream
    topic, messages = kafka.warm_up_topic, stream.warm_up_messages
    admin = KafkaAdmin(spark, kafka.bootstrap_servers)
    try:
        admin.create_topic(topic, kafka.partitions, WARM_UP_TOPIC_CONFIGS)
        try:
            warm_up_messages(spark, messages).write.format(KAFKA_FORMAT).options(
                **warm_up_writer_options(kafka, topic)
            ).save()
            close_kafka_producers(spark)
            read = replace(
                settings,
                kafka=replace(kafka, topic=topic),
                stream=replace(
                    stream, starting_offsets="earliest", max_offsets_per_trigger=WARM_UP_BATCH
                ),
            )
            _stream_until(spark, read, write_options, messages, stop)
        finally:
            admin.delete_topic(topic)
    finally:
        admin.close()


def warm_up_messages(spark: SparkSession, messages: int) -> DataFrame:
    """``messages`` synthetic users (``parsing.synthetic_values``), each keyed by its id and
    with the schema-id header as the producer's records are, so the job's key and header
    columns are read as they will be."""
    header = F.struct(
        F.lit(contract.SCHEMA_ID_HEADER).alias("key"), F.lit(bytearray(b"1")).alias("value")
    )
    return spark.range(messages, numPartitions=1).select(
        parsing.synthetic_id(F.col("id")).cast("binary").alias("key"),
        parsing.synthetic_values(F.col("id")).alias("value"),
        F.array(header).alias("headers"),
    )


def warm_up_writer_options(kafka: config.KafkaSettings, topic: str) -> dict[str, str]:
    """The Kafka writer's options for the warm-up's messages: compressed as the producer
    compresses its batches (``KAFKA_COMPRESSION``), so the broker's and the job's decompression
    warm up too."""
    options = {"kafka.bootstrap.servers": kafka.bootstrap_servers, "topic": topic}
    if kafka.compression != "none":
        options["kafka.compression.type"] = kafka.compression
    return options


def _stream_until(
    spark: SparkSession,
    settings: Settings,
    write_options: dict[str, str],
    messages: int,
    stop: threading.Event,
) -> None:
    """Run the job's query on ``settings``' topic, writing to ``write_options``' table, until
    it has read ``messages`` messages; then stop it and remove its checkpoint."""
    read = spark.sparkContext.accumulator(0)

    def count(batch_messages: int, _rejected: int) -> None:
        read.add(batch_messages)

    append = PreparedAppend(spark, parsing.valid_selection(), write_options)
    checkpoint = tempfile.mkdtemp(prefix="spark-stream-warm-up-")
    query = (
        parsing.classify(read_kafka(spark, settings), count)
        .writeStream.queryName(write_options["table"])
        .foreachBatch(lambda batch, _batch_id: append(batch))
        .option("checkpointLocation", checkpoint)
        .start()  # each batch as soon as the last is done, whatever the job's trigger
    )
    limit = START_STALL_FACTOR * settings.stream.stall_seconds
    deadline = time.monotonic() + limit
    try:
        while read.value < messages:
            if not query.isActive:
                raise query.exception() or RuntimeError("the warm-up query stopped")
            if stop.is_set():
                raise RuntimeError("asked to stop")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{read.value:,} of {messages:,} messages in {limit:.0f} s")
            time.sleep(0.1)
    finally:
        query.stop()
        shutil.rmtree(checkpoint, ignore_errors=True)


def close_kafka_producers(spark: SparkSession) -> None:
    """Close the Kafka producers Spark keeps for its Kafka sink in this JVM (local mode: the
    warm-up's writer). Kept, the warm-up's asks for its deleted topic when its metadata ages (5
    minutes): a dozen "UNKNOWN_TOPIC_OR_PARTITION" warnings in the job's log after each start.
    The job itself writes to Cassandra only: nothing else uses the pool. Spark has no public
    call for it; if this one is gone, the warnings come back and nothing else changes. In
    cluster mode the writer ran on the executors, and the warnings stay."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    try:
        pool = getattr(jvm.org.apache.spark.sql.kafka010.producer, "InternalKafkaProducerPool$")
        getattr(pool, "MODULE$").reset()
    except Py4JError as exc:
        log.debug("could not close Spark's Kafka producers: %s", exc)


class KafkaAdmin:
    """Kafka's admin client in the job's JVM (the job's Python has no Kafka client): the
    warm-up creates its topic and deletes it."""

    TIMEOUT_SECONDS = 30

    def __init__(self, spark: SparkSession, bootstrap_servers: str) -> None:
        self._jvm = spark.sparkContext._jvm
        self._gateway = spark.sparkContext._gateway
        properties = self._jvm.java.util.Properties()
        properties.put("bootstrap.servers", bootstrap_servers)
        properties.put("default.api.timeout.ms", str(self.TIMEOUT_SECONDS * 1000))
        self._admin = self._jvm.org.apache.kafka.clients.admin.Admin.create(properties)

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        """Create ``name`` (the brokers' replication factor); one left by an earlier start is
        kept (its messages are synthetic users too)."""
        jvm = self._jvm
        topic = jvm.org.apache.kafka.clients.admin.NewTopic(
            name, jvm.java.util.Optional.of(partitions), jvm.java.util.Optional.empty()
        ).configs(MapConverter().convert(configs, self._gateway._gateway_client))
        try:
            self._wait(self._admin.createTopics(jvm.java.util.Collections.singleton(topic)))
        except Py4JJavaError as exc:
            if "TopicExistsException" not in str(exc):
                raise

    def delete_topic(self, name: str) -> None:
        self._wait(self._admin.deleteTopics(self._jvm.java.util.Collections.singleton(name)))

    def close(self) -> None:
        self._admin.close()

    def _wait(self, result: Any) -> None:
        unit = self._jvm.java.util.concurrent.TimeUnit.SECONDS
        result.all().get(self.TIMEOUT_SECONDS, unit)


# Spark's own log line for each batch's query progress (as JSON: durationMs by phase,
# numInputRows), written at INFO by the query's class. SPARK_BATCH_TIMINGS turns that one logger
# on in the JVM: nothing of it crosses to Python per batch (a Python listener did, and slowed
# each batch: docs/benchmark.md). Read back by the benchmark's cost part.
PROGRESS_LOGGER = "org.apache.spark.sql.execution.streaming.MicroBatchExecution"
PROGRESS_MARKER = "Streaming query made progress: "


def log_batch_progress(spark: SparkSession) -> None:
    """Have Spark log each batch's progress (PROGRESS_MARKER, then its JSON) to the job's log."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    log4j = jvm.org.apache.logging.log4j
    log4j.core.config.Configurator.setLevel(PROGRESS_LOGGER, log4j.Level.INFO)


def renews_session(attempt: int) -> bool:
    """Whether a batch's failed write ``attempt`` gets the next one a new connector session:
    the 1st, 2nd, 4th, 8th... A failed write's session stays open (``evictCache`` does not
    close it; the driver counted one more open session per failed attempt): renewing after
    each failure of a batch Cassandra keeps refusing (a limit, a lost quorum) opened a session
    every 4 s, 24 in two minutes; this way, 10 in an hour. After Cassandra was away it is
    renewed anyway (``_wait_for_cassandra``)."""
    return attempt & (attempt - 1) == 0


# Cassandra's answer to a batch over its batch_size_fail_threshold: no retry helps until the
# limit is raised and Cassandra restarted (the job keeps retrying, and goes on once it is).
BATCH_TOO_LARGE = "Batch too large"


def write_failure(exc: BaseException) -> str:
    """Why a write failed, for the retry's warning; with the fix when Cassandra refuses the
    job's batches as too large (a Cassandra with its default limits)."""
    if BATCH_TOO_LARGE in str(exc):
        return (
            "Cassandra refuses the job's batches as too large: set batch_size_fail_threshold: "
            "640KiB in its cassandra.yaml (as stack/cassandra.yaml and Compose's cassandra "
            "service do) and restart it"
        )
    return first_line(exc)


def first_line(exc: BaseException) -> str:
    """An exception's first line: a JVM error's message without its stack trace."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def build_session(settings: Settings) -> SparkSession:
    """The Spark session, with the Cassandra connector's connection and credentials."""
    cassandra = settings.cassandra
    spark = (
        SparkSession.builder.appName("spark_stream")
        .config("spark.cassandra.connection.host", ",".join(cassandra.hosts))
        .config("spark.cassandra.connection.port", str(cassandra.port))
        .config("spark.cassandra.auth.username", cassandra.username)
        .config("spark.cassandra.auth.password", cassandra.password)
        .config(map={**CONNECTOR_CONF, **session_conf(settings.stream)})
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    require_data_sources(spark, KAFKA_FORMAT, CASSANDRA_FORMAT)
    set_driver_properties(spark, driver_properties(cassandra.keyspace))
    return spark


def driver_properties(keyspace: str) -> dict[str, str]:
    """Settings of the connector's Java driver that the connector has no option for.

    The connector refreshes the driver's schema metadata each time it loads a table (once a
    session here, ``PreparedAppend``; it was once a write): 13 requests. Only the job's
    keyspace, and no schema agreement check first (the job changes no schema), halve that
    (`refreshSchema` p50 32 -> 17 ms on a busy stack, 14 -> 8 ms on a quiet one).

    The driver's timer thread, which expires requests that time out, ticks every 100 ms
    (10 wake-ups a second through an idle hour); a tick a second is precise enough for the 5
    and 10 s timeouts of ``CONNECTOR_CONF``, and the job sets no speculative executions.

    The driver reads its configuration once: by default it parses its files again every 5
    minutes (the idle job's busiest Java thread in JFR, about 70 ms of CPU each time), and nothing
    changes them while the job runs.
    """
    driver = "datastax-java-driver"
    return {
        f"{driver}.advanced.metadata.schema.refreshed-keyspaces.0": keyspace,
        f"{driver}.advanced.control-connection.schema-agreement.timeout": "0s",
        f"{driver}.advanced.control-connection.schema-agreement.warn-on-failure": "false",
        f"{driver}.advanced.netty.timer.tick-duration": "1 second",
        f"{driver}.basic.config-reload-interval": "0",
    }


def set_driver_properties(spark: SparkSession, properties: dict[str, str]) -> None:
    """Set ``properties`` as the driver JVM's system properties, where the Java driver reads
    overrides of its configuration when the connector opens its first session (after this:
    nothing has opened one yet)."""
    system = spark.sparkContext._jvm.java.lang.System
    for name, value in properties.items():
        system.setProperty(name, value)


def require_data_sources(spark: SparkSession, *names: str) -> None:
    """Raise ``ConnectorMissing`` with the fix unless Spark can load each data source."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    lookup = jvm.org.apache.spark.sql.execution.datasources.DataSource.lookupDataSource
    for name in names:
        try:
            lookup(name, spark._jsparkSession.sessionState().conf())
        except (AnalysisException, Py4JJavaError) as exc:  # pyspark converts the JVM's error
            raise ConnectorMissing(
                f"Spark cannot find the {name!r} data source: pass the connector jars with "
                '`spark-submit --jars "$(python -m pipeline.spark_jars)"` (SPARK_JARS_DIR)'
            ) from exc


def read_kafka(spark: SparkSession, settings: Settings) -> DataFrame:
    """The Kafka topic as a streaming DataFrame with the Kafka source's columns.

    Subscribed by a pattern that matches the topic's name only: a topic that does not exist
    yet is an empty source until it does (``subscribe`` would fail the query), and its
    partitions are then read from their first offset. The topic's partitions are read by
    ``SPARK_BATCH_PARTITIONS`` tasks per batch: each task costs a Python worker round trip and
    a connector writer, which is most of a small batch's time.
    """
    kafka = (
        spark.readStream.format(KAFKA_FORMAT)
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribePattern", f"^{re.escape(settings.kafka.topic)}$")
        .option("startingOffsets", settings.stream.starting_offsets)
        .option("maxOffsetsPerTrigger", settings.stream.max_offsets_per_trigger)
        .options(**KAFKA_OPTIONS)
        .load()
    )
    return kafka.coalesce(settings.stream.batch_partitions)


def checkpoint_location(stream: config.StreamSettings) -> str:
    """The checkpoint folder, created if missing; a warning if it would not survive a reboot."""
    path = Path(stream.checkpoint_dir)
    if path.resolve().is_relative_to("/tmp"):
        log.warning("SPARK_CHECKPOINT_DIR=%s is under /tmp: progress may not survive", path)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def install_stop_handlers(spark: SparkSession, stop: threading.Event) -> Any:
    """Turn SIGTERM and SIGINT into ``stop.set()``, in Python and in the JVM.

    Under ``spark-submit`` the JVM is this Python's parent and also receives the signal (a
    `kill` of the process tree, Ctrl-C, `docker stop`); its default handler would exit at once
    and take the running batch with it. Returns the JVM handler, which must stay referenced.
    """

    # The signal reaches Python and the JVM at once, and each calls this from its own thread:
    # the lock makes one of them the first, which says so. Reentrant, for a second signal
    # handled in the main thread while it is in here.
    first = threading.RLock()

    def on_signal(name: str) -> None:
        with first:
            stopping = not stop.is_set()
            stop.set()
        if stopping:
            log.info("SIG%s: stopping after the running batch", name)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda s, _frame: on_signal(signal.Signals(s).name[3:]))

    class JvmSignalHandler:
        def handle(self, jvm_signal: Any) -> None:
            on_signal(jvm_signal.getName())

        class Java:
            implements = ["sun.misc.SignalHandler"]

    from pyspark.java_gateway import ensure_callback_server_started

    gateway, jvm = spark.sparkContext._gateway, spark.sparkContext._jvm
    assert gateway is not None and jvm is not None
    ensure_callback_server_started(gateway)
    handler = JvmSignalHandler()
    for name in ("TERM", "INT"):
        jvm.sun.misc.Signal.handle(jvm.sun.misc.Signal(name), handler)
    return handler


NO_TOPIC_YET = "no partition of the topic yet: waiting for it to be created (KAFKA_TOPIC)"


def no_partitions_yet(progress: dict) -> bool:
    """A query progress report whose Kafka source has no partition to read (no topic yet)."""
    ends = [source.get("endOffset") for source in progress.get("sources", [])]
    return bool(ends) and all(not end or end == "{}" for end in ends)


def run_until_stopped(
    query: StreamingQuery,
    sink: CassandraSink,
    stop: threading.Event,
    checkpoint: str,
    stall_seconds: float,
) -> int:
    """Block until the query fails, stalls or ``stop`` is set; return the exit status.

    A query that shows no sign of life (a finished batch or Spark's idle report every 10 s, a
    batch begun, a write attempt ended) for ``stall_seconds`` is stalled, and one that has not
    begun its first batch after ``START_STALL_FACTOR`` times that: the status says "try
    again" at once, without stopping the query, which may be stuck where it cannot be
    interrupted. (The connector refreshes its schema metadata when a write loads the
    table and waits for that uninterruptibly: when Cassandra went away at the wrong moment, it
    may wait forever. A new process has a new session.) A write that fails and is tried again
    is alive: the job waits for Cassandra in the same process.
    """
    seen, moved, told = None, time.monotonic(), False
    while query.isActive and not stop.wait(WATCH_SECONDS):
        progress = query.lastProgress
        stamp = progress["timestamp"] if progress else None
        now = time.monotonic()
        if stamp != seen:
            seen, moved = stamp, now
            if not told and progress and no_partitions_yet(progress):
                log.info("%s", NO_TOPIC_YET)
                told = True
        quiet = now - max(moved, sink.alive_at)
        starting = seen is None and not sink.begun
        limit = START_STALL_FACTOR * stall_seconds if starting else stall_seconds
        if quiet > limit:
            log.error(
                "no progress for %.0f s (batch %s was the last written): exiting so that the "
                "job is started again (SPARK_STALL_SECONDS)",
                quiet,
                sink.last_batch_id,
            )
            stop.set()
            return EXIT_RETRY
    if query.isActive:
        let_batch_finish(sink, checkpoint)
        try:
            query.stop()  # at most spark.sql.streaming.stopTimeout
        except Exception as exc:  # noqa: BLE001 - stopping anyway; the status says what happened
            log.warning("the query did not stop cleanly: %s", first_line(exc))
        log.info("stopped after batch %s", sink.last_batch_id)
    try:
        query.awaitTermination()  # raises StreamingQueryException if the query failed
    except StreamingQueryException as exc:
        if stop.is_set():  # the batch abandoned on the way out
            return EXIT_STOPPED
        log.error("the query failed: %s", first_line(exc))
        return EXIT_RETRY
    return EXIT_STOPPED


def let_batch_finish(sink: CassandraSink, checkpoint: str) -> None:
    """Give the running batch ``STOP_GRACE_SECONDS`` to be written and committed."""
    if not sink.wait_idle(STOP_GRACE_SECONDS):
        log.warning("batch still running after %.0f s: interrupting it", STOP_GRACE_SECONDS)
    elif sink.last_batch_id is not None:
        # foreachBatch has returned; Spark commits the batch right after.
        commit = Path(checkpoint, "commits", str(sink.last_batch_id))
        deadline = time.monotonic() + 5
        while not commit.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def parse_args(argv: list[str]) -> argparse.Namespace:
    launch = ", ".join(v.name for v in config.VARIABLES if config.SUBMIT in v.read_by)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=(
            "Environment variables (defaults; pipeline/config.py declares them):\n"
            f"{config.variables_help(config.STREAM_JOB)}\n\n"
            f"Read by the spark-submit line that starts the job: {launch}."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def prepare_cassandra(cassandra: CassandraSettings) -> None:
    """Log in with the job's credentials; check that set-up made both tables as the contract
    says (the job's role may not create or alter them)."""
    session = cassandra_schema.connect(cassandra)
    try:
        cassandra_schema.check_schema(session, cassandra)
    finally:
        session.cluster.shutdown()


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # The Python driver's own warnings while Cassandra is away (a traceback a second): the job
    # says it waits for Cassandra instead.
    logging.getLogger("cassandra").setLevel(logging.ERROR)
    parse_args(argv)
    try:
        settings = config.load()
        log.info("%s", describe(settings))
        prepare_cassandra(settings.cassandra)
        spark = build_session(settings)
        checkpoint = checkpoint_location(settings.stream)
    except FATAL_ERRORS as exc:
        log.error("%s", exc)
        return EXIT_FIX
    except TRANSIENT_ERRORS as exc:
        log.error("%s", exc)
        return EXIT_RETRY

    stop = threading.Event()
    _jvm_handler = install_stop_handlers(spark, stop)
    sink = CassandraSink(spark, settings.cassandra, stop)
    started = time.monotonic()
    sink.warm_up(spark, settings)
    warm_up_ui(spark)
    compile_in_the_background(spark)
    if settings.stream.batch_timings == "true":
        log_batch_progress(spark)
    query = (
        sink.classify(read_kafka(spark, settings))
        .writeStream.queryName(settings.cassandra.table)
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=settings.stream.trigger_interval)
        .start()
    )
    log.info(
        "stream job ready in %.1f s: reading topic %s into %s.%s",
        time.monotonic() - started,
        settings.kafka.topic,
        settings.cassandra.keyspace,
        settings.cassandra.table,
    )
    status = run_until_stopped(query, sink, stop, checkpoint, settings.stream.stall_seconds)
    if status == EXIT_RETRY:
        # A stalled or failed query may leave a thread stuck in the JVM that spark.stop() and
        # the interpreter's exit would wait for: leave at once, the supervisor starts anew
        # (nothing is lost: the batch in flight was not committed and is read again).
        logging.shutdown()
        os._exit(status)
    spark.stop()
    return status


def describe(settings: Settings) -> str:
    """One line saying where the job reads and writes (no password)."""
    k, c, s = settings.kafka, settings.cassandra, settings.stream
    return (
        f"kafka {k.bootstrap_servers} topic {k.topic} -> cassandra {c.host}:{c.port} as "
        f"{c.username} into {c.keyspace}.{c.table} (dead letters {c.keyspace}."
        f"{c.dead_letter_table}); checkpoint {s.checkpoint_dir}, trigger {s.trigger_interval}, "
        f"at most {s.max_offsets_per_trigger} messages per batch in {s.batch_partitions} task(s)"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
