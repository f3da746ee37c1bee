"""Every endpoint, credential and size of the pipeline, read from the environment in one place.

The same variable names work in Docker Compose and in the local stack; only the values differ.
Defaults are the local stack's. ``README.md`` documents each variable; a test keeps the two in step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# name -> default, the single table of settings (README's configuration section mirrors it).
DEFAULTS: dict[str, str] = {
    # Kafka
    "KAFKA_BOOTSTRAP_SERVERS": "localhost:9092",
    "KAFKA_TOPIC": "users_created",
    "KAFKA_TOPIC_PARTITIONS": "3",
    "KAFKA_REPLICATION_FACTOR": "1",
    # One of COMPRESSIONS. lz4 (requirements.txt installs its library) compresses our records
    # for about 1/20 of the CPU of kafka-python's gzip, whose level it fixes at 9.
    "KAFKA_COMPRESSION": "lz4",
    "KAFKA_LINGER_MS": "20",
    "KAFKA_BATCH_SIZE": "262144",
    # kafka-python has no buffer_memory: at this many unacknowledged sends, a send waits.
    "KAFKA_MAX_IN_FLIGHT_RECORDS": "20000",
    # randomuser.me (or the bundled stand-in)
    "USERS_API_URL": "https://randomuser.me/api/",
    "USERS_PER_REQUEST": "5000",
    "USERS_TOTAL": "0",  # 0: no count limit, USERS_RUN_SECONDS bounds the run
    "USERS_RUN_SECONDS": "60",
    # Users sent per second, spread evenly; 0: unpaced. The producer alone outruns the stream
    # job, which keeps up with a few thousand users/s on a 2-core machine: pacing keeps the
    # pipeline real time. Tuned by measurement; this is the one place the value lives.
    "USERS_PER_SECOND": "2000",
    "USERS_SEED": "",  # empty: a fresh random seed per run, logged so the run can be replayed
    "USERS_START_PAGE": "1",
    "USERS_NAT": "",
    "USERS_API_CONNECT_TIMEOUT": "5",
    "USERS_API_READ_TIMEOUT": "30",
    "USERS_API_MAX_RETRIES": "5",
    "USERS_API_BACKOFF_SECONDS": "1",
    # Cassandra
    "CASSANDRA_HOST": "localhost",
    "CASSANDRA_PORT": "9042",
    "CASSANDRA_USERNAME": "cassandra",
    "CASSANDRA_PASSWORD": "cassandra",
    "CASSANDRA_KEYSPACE": "spark_streams",
    "CASSANDRA_TABLE": "created_users",
    "CASSANDRA_DEAD_LETTER_TABLE": "dead_letters",
    "CASSANDRA_REPLICATION_FACTOR": "1",
    # Spark stream job
    "SPARK_MASTER": "local[*]",
    "SPARK_CHECKPOINT_DIR": str(REPO_ROOT / ".stack" / "data" / "spark" / "checkpoint"),
    # "0 seconds": the next micro-batch starts as soon as the last one is committed.
    "SPARK_TRIGGER_INTERVAL": "0 seconds",
    # Caps a batch (a backlog is read in several); small enough that no row waits long for it.
    "SPARK_MAX_OFFSETS_PER_TRIGGER": "20000",
    "SPARK_STARTING_OFFSETS": "earliest",
    # Spark tasks per micro-batch. One keeps a batch's fixed cost lowest (one Python worker
    # round trip, one connector writer): measured on 2 cores it halves latency at 1,000 users/s
    # and sustains 8,000/s. Raise it with more cores or executors.
    "SPARK_BATCH_PARTITIONS": "1",
    # No progress for this long (Cassandra or Kafka away, a stuck batch): the job exits 1 and
    # its supervisor starts it again. A batch takes seconds at most; Spark reports an idle
    # query every 10 s.
    "SPARK_STALL_SECONDS": "20",
    "SPARK_UI_PORT": "4040",
    "SPARK_JARS_DIR": str(REPO_ROOT / ".stack" / "jars" / "spark"),
}


# A DAG run's parameters (Airflow's trigger conf) and the variable each one overrides for that run.
RUN_PARAMS: dict[str, str] = {
    "api_url": "USERS_API_URL",
    "total": "USERS_TOTAL",
    "run_seconds": "USERS_RUN_SECONDS",
    "seed": "USERS_SEED",
    "start_page": "USERS_START_PAGE",
    "topic": "KAFKA_TOPIC",
    "users_per_second": "USERS_PER_SECOND",
}

# KAFKA_COMPRESSION's values; "none" sends uncompressed batches.
COMPRESSIONS = ("none", "gzip", "lz4", "snappy", "zstd")


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


def _get(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    return DEFAULTS[name] if value is None or value == "" else value


def _int(env: Mapping[str, str], name: str, minimum: int = 0) -> int:
    raw = _get(env, name)
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = _get(env, name)
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    if value < 0:
        raise ConfigError(f"{name}={value} must not be negative")
    return value


def _compression(env: Mapping[str, str]) -> str:
    raw = _get(env, "KAFKA_COMPRESSION")
    if raw.lower() not in COMPRESSIONS:
        raise ConfigError(f"KAFKA_COMPRESSION={raw!r}: use one of {', '.join(COMPRESSIONS)}")
    return raw.lower()


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str
    topic: str
    partitions: int
    replication_factor: int
    compression: str
    linger_ms: int
    batch_size: int
    max_in_flight_records: int


@dataclass(frozen=True)
class ApiSettings:
    url: str
    per_request: int
    total: int
    run_seconds: float
    per_second: float
    seed: str
    start_page: int
    nat: str
    connect_timeout: float
    read_timeout: float
    max_retries: int
    backoff_seconds: float


@dataclass(frozen=True)
class CassandraSettings:
    host: str
    port: int
    username: str
    password: str
    keyspace: str
    table: str
    dead_letter_table: str
    replication_factor: int

    def __repr__(self) -> str:  # never print the password
        return (
            f"CassandraSettings(host={self.host!r}, port={self.port}, "
            f"username={self.username!r}, keyspace={self.keyspace!r}, table={self.table!r})"
        )


@dataclass(frozen=True)
class StreamSettings:
    master: str
    checkpoint_dir: str
    trigger_interval: str
    max_offsets_per_trigger: int
    starting_offsets: str
    stall_seconds: float
    batch_partitions: int
    ui_port: int
    jars_dir: str


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings
    api: ApiSettings
    cassandra: CassandraSettings
    stream: StreamSettings


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``env`` (default ``os.environ``).

    Raises ``ConfigError`` naming the variable when a value is unusable.
    """
    env = os.environ if env is None else env
    per_request = _int(env, "USERS_PER_REQUEST", minimum=1)
    if per_request > 5000:
        raise ConfigError(f"USERS_PER_REQUEST={per_request}: randomuser.me serves at most 5000")
    return Settings(
        kafka=KafkaSettings(
            bootstrap_servers=_get(env, "KAFKA_BOOTSTRAP_SERVERS"),
            topic=_get(env, "KAFKA_TOPIC"),
            partitions=_int(env, "KAFKA_TOPIC_PARTITIONS", minimum=1),
            replication_factor=_int(env, "KAFKA_REPLICATION_FACTOR", minimum=1),
            compression=_compression(env),
            linger_ms=_int(env, "KAFKA_LINGER_MS"),
            batch_size=_int(env, "KAFKA_BATCH_SIZE", minimum=1),
            max_in_flight_records=_int(env, "KAFKA_MAX_IN_FLIGHT_RECORDS", minimum=1),
        ),
        api=ApiSettings(
            url=_get(env, "USERS_API_URL"),
            per_request=per_request,
            total=_int(env, "USERS_TOTAL"),
            run_seconds=_float(env, "USERS_RUN_SECONDS"),
            per_second=_float(env, "USERS_PER_SECOND"),
            seed=_get(env, "USERS_SEED"),
            start_page=_int(env, "USERS_START_PAGE", minimum=1),
            nat=_get(env, "USERS_NAT"),
            connect_timeout=_float(env, "USERS_API_CONNECT_TIMEOUT"),
            read_timeout=_float(env, "USERS_API_READ_TIMEOUT"),
            max_retries=_int(env, "USERS_API_MAX_RETRIES"),
            backoff_seconds=_float(env, "USERS_API_BACKOFF_SECONDS"),
        ),
        cassandra=CassandraSettings(
            host=_get(env, "CASSANDRA_HOST"),
            port=_int(env, "CASSANDRA_PORT", minimum=1),
            username=_get(env, "CASSANDRA_USERNAME"),
            password=_get(env, "CASSANDRA_PASSWORD"),
            keyspace=_get(env, "CASSANDRA_KEYSPACE"),
            table=_get(env, "CASSANDRA_TABLE"),
            dead_letter_table=_get(env, "CASSANDRA_DEAD_LETTER_TABLE"),
            replication_factor=_int(env, "CASSANDRA_REPLICATION_FACTOR", minimum=1),
        ),
        stream=StreamSettings(
            master=_get(env, "SPARK_MASTER"),
            checkpoint_dir=_get(env, "SPARK_CHECKPOINT_DIR"),
            trigger_interval=_get(env, "SPARK_TRIGGER_INTERVAL"),
            max_offsets_per_trigger=_int(env, "SPARK_MAX_OFFSETS_PER_TRIGGER", minimum=1),
            starting_offsets=_get(env, "SPARK_STARTING_OFFSETS"),
            stall_seconds=_float(env, "SPARK_STALL_SECONDS"),
            batch_partitions=_int(env, "SPARK_BATCH_PARTITIONS", minimum=1),
            ui_port=_int(env, "SPARK_UI_PORT", minimum=1),
            jars_dir=_get(env, "SPARK_JARS_DIR"),
        ),
    )


def load_for_run(
    params: Mapping[str, object] | None, env: Mapping[str, str] | None = None
) -> Settings:
    """Settings from ``env``, with a DAG run's non-empty ``params`` (see ``RUN_PARAMS``) on top."""
    merged = dict(os.environ if env is None else env)
    for name, value in (params or {}).items():
        if name not in RUN_PARAMS:
            raise ConfigError(f"unknown run parameter {name!r}; known: {', '.join(RUN_PARAMS)}")
        if value is not None and value != "":
            merged[RUN_PARAMS[name]] = str(value)
    return load(merged)
