"""Stream user records from Kafka into Cassandra, routing malformed messages to dead letters.

    spark-submit --master 'local[*]' --driver-memory 1g \\
        --jars "$(python -m pipeline.spark_jars)" spark_stream.py

Reads as one sentence: readStream (Kafka) -> ``parsing.classify`` -> writeStream (foreachBatch:
valid rows to ``CASSANDRA_TABLE``, rejected ones with their reason to
``CASSANDRA_DEAD_LETTER_TABLE``) -> run until SIGTERM. Every setting comes from the environment
(``pipeline/config.py`` holds the defaults; ``--help`` lists them).

Exactly-once effect: the Kafka offsets of each micro-batch are in the checkpoint
(``SPARK_CHECKPOINT_DIR``), so a restarted job resumes after the last committed batch and at
worst replays the one it was in. A replay changes nothing: users are keyed by their stable
``id`` and dead letters by (topic, partition, offset), and Cassandra writes are upserts.

On start the job creates the keyspace and tables if missing (``pipeline/cassandra_schema.py``)
and exits with status 1 and a one-line reason when Cassandra is down, refuses the login, or has
a table whose columns drifted from the contract. SIGTERM or SIGINT lets the running batch finish
and commit, then stops the query and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from pipeline import cassandra_schema, config, parsing
from pipeline.config import CassandraSettings, Settings

log = logging.getLogger("spark_stream")

CASSANDRA_FORMAT = "org.apache.spark.sql.cassandra"
KAFKA_FORMAT = "kafka"

# Connector write settings, chosen for throughput on a single-node local Cassandra; each is
# per DataFrame write, so `--conf` cannot override them by accident.
WRITE_OPTIONS: dict[str, str] = {
    # One replica acknowledges: with replication factor 1 it is the same as the default
    # LOCAL_QUORUM, with more replicas it trades read-your-write for latency. Replays make a
    # lost write good again only until its batch is committed, so raise it for production.
    "spark.cassandra.output.consistency.level": "LOCAL_ONE",
    # Every row has its own partition key (the user id), so grouping rows into batches by
    # partition gains nothing; writing single rows with more of them in flight per task does.
    "spark.cassandra.output.batch.grouping.key": "none",
    "spark.cassandra.output.batch.size.rows": "1",
    "spark.cassandra.output.concurrent.writes": "32",
}

# How long SIGTERM waits for the running batch before interrupting it (it is then replayed on
# restart). Below the 60 s after which `./run.sh stream stop` sends SIGKILL.
STOP_GRACE_SECONDS = 45.0

# The variables this job reads; SPARK_MASTER, SPARK_UI_PORT and SPARK_JARS_DIR are for the
# launcher (`--master`, `--conf spark.ui.port`, `--jars`).
JOB_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "KAFKA_TOPIC",
    "CASSANDRA_HOST",
    "CASSANDRA_PORT",
    "CASSANDRA_USERNAME",
    "CASSANDRA_PASSWORD",
    "CASSANDRA_KEYSPACE",
    "CASSANDRA_TABLE",
    "CASSANDRA_DEAD_LETTER_TABLE",
    "CASSANDRA_REPLICATION_FACTOR",
    "SPARK_CHECKPOINT_DIR",
    "SPARK_TRIGGER_INTERVAL",
    "SPARK_MAX_OFFSETS_PER_TRIGGER",
    "SPARK_STARTING_OFFSETS",
)


class ConnectorMissing(RuntimeError):
    """A Spark data source (Kafka or Cassandra) is not on the classpath."""


# Problems found before the query starts: logged as one line naming the fix, exit status 1.
STARTUP_ERRORS = (
    config.ConfigError,
    cassandra_schema.CassandraUnavailable,
    cassandra_schema.SchemaMismatch,
    ConnectorMissing,
)


class CassandraSink:
    """The foreachBatch function: write a classified micro-batch's two halves, log the counts."""

    def __init__(self, cassandra: CassandraSettings) -> None:
        self._cassandra = cassandra
        self._idle = threading.Event()
        self._idle.set()
        self.last_batch_id: int | None = None

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        self._idle.clear()
        try:
            self._write(batch, batch_id)
            self.last_batch_id = batch_id
        finally:
            self._idle.set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no batch is being written; False if one still is after ``timeout``."""
        return self._idle.wait(timeout)

    def _write(self, classified: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        # Cached so the Kafka rows are fetched and parsed once for the counts and both writes.
        classified.persist()
        try:
            counts = classified.agg(
                F.count(F.lit(1)).alias("rows_in"),
                F.count_if(F.col(parsing.REASON).isNull()).alias("valid"),
            ).first()
            rows_in, valid = (counts["rows_in"], counts["valid"]) if counts else (0, 0)
            if valid:
                self._append(parsing.valid_rows(classified), self._cassandra.table)
            if rows_in - valid:
                rejected = parsing.rejected_rows(classified)
                rejected = rejected.withColumn("rejected_at", F.current_timestamp())
                self._append(rejected, self._cassandra.dead_letter_table)
        finally:
            classified.unpersist()
        log.info(
            "batch %d: %d rows in, %d written, %d rejected, %.2f s",
            batch_id,
            rows_in,
            valid,
            rows_in - valid,
            time.monotonic() - started,
        )

    def _append(self, rows: DataFrame, table: str) -> None:
        (
            rows.write.format(CASSANDRA_FORMAT)
            .options(keyspace=self._cassandra.keyspace, table=table, **WRITE_OPTIONS)
            .mode("append")
            .save()
        )


def build_session(cassandra: CassandraSettings) -> SparkSession:
    """The Spark session, with the Cassandra connector's connection and credentials."""
    spark = (
        SparkSession.builder.appName("spark_stream")
        .config("spark.cassandra.connection.host", cassandra.host)
        .config("spark.cassandra.connection.port", str(cassandra.port))
        .config("spark.cassandra.auth.username", cassandra.username)
        .config("spark.cassandra.auth.password", cassandra.password)
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    require_data_sources(spark, KAFKA_FORMAT, CASSANDRA_FORMAT)
    return spark


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
    """The Kafka topic as a streaming DataFrame with the Kafka source's columns."""
    return (
        spark.readStream.format(KAFKA_FORMAT)
        .option("kafka.bootstrap.servers", settings.kafka.bootstrap_servers)
        .option("subscribe", settings.kafka.topic)
        .option("startingOffsets", settings.stream.starting_offsets)
        .option("maxOffsetsPerTrigger", settings.stream.max_offsets_per_trigger)
        .load()
    )


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

    def on_signal(name: str) -> None:
        if not stop.is_set():
            log.info("SIG%s: stopping after the running batch", name)
        stop.set()

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


def run_until_stopped(
    query: StreamingQuery, sink: CassandraSink, stop: threading.Event, checkpoint: str
) -> None:
    """Block until the query fails (re-raised) or ``stop`` is set (stopped after its batch)."""
    while query.isActive and not stop.wait(0.5):
        pass
    if stop.is_set() and query.isActive:
        if not sink.wait_idle(STOP_GRACE_SECONDS):
            log.warning("batch still running after %.0f s: interrupting it", STOP_GRACE_SECONDS)
        elif sink.last_batch_id is not None:
            # foreachBatch has returned; Spark commits the batch right after.
            commit = Path(checkpoint, "commits", str(sink.last_batch_id))
            deadline = time.monotonic() + 10
            while not commit.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        query.stop()
        log.info("stopped after batch %s", sink.last_batch_id)
    query.awaitTermination()  # raises StreamingQueryException if the query failed


def parse_args(argv: list[str]) -> argparse.Namespace:
    defaults = "\n".join(f"  {name}={config.DEFAULTS[name]!r}" for name in JOB_VARIABLES)
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog=f"Environment variables (defaults):\n{defaults}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser.parse_args(argv)


def prepare_cassandra(cassandra: CassandraSettings) -> None:
    """Log in with the job's credentials and create the keyspace and tables if missing."""
    session = cassandra_schema.connect(cassandra)
    try:
        cassandra_schema.ensure_schema(session, cassandra)
    finally:
        session.cluster.shutdown()


def main(argv: list[str]) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)
    parse_args(argv)
    try:
        settings = config.load()
        log.info("%s", describe(settings))
        prepare_cassandra(settings.cassandra)
        spark = build_session(settings.cassandra)
        checkpoint = checkpoint_location(settings.stream)
    except STARTUP_ERRORS as exc:
        log.error("%s", exc)
        return 1

    stop = threading.Event()
    _jvm_handler = install_stop_handlers(spark, stop)
    sink = CassandraSink(settings.cassandra)
    query = (
        parsing.classify(read_kafka(spark, settings))
        .writeStream.queryName(settings.cassandra.table)
        .foreachBatch(sink)
        .option("checkpointLocation", checkpoint)
        .trigger(processingTime=settings.stream.trigger_interval)
        .start()
    )
    run_until_stopped(query, sink, stop, checkpoint)
    spark.stop()
    return 0


def describe(settings: Settings) -> str:
    """One line saying where the job reads and writes (no password)."""
    k, c, s = settings.kafka, settings.cassandra, settings.stream
    return (
        f"kafka {k.bootstrap_servers} topic {k.topic} -> cassandra {c.host}:{c.port} as "
        f"{c.username} into {c.keyspace}.{c.table} (dead letters {c.keyspace}."
        f"{c.dead_letter_table}); checkpoint {s.checkpoint_dir}, trigger {s.trigger_interval}, "
        f"at most {s.max_offsets_per_trigger} messages per batch"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
