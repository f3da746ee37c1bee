"""Every endpoint, credential, size, port and path of the pipeline and its local stack.

``VARIABLES`` is the one table of environment variables: each one's name, default, type, who
reads it and a line of help. ``load()`` reads them all once into typed ``Settings``; README's
configuration table is generated from ``VARIABLES`` (``python -m pipeline.config --markdown``)
and a test keeps the two equal. The same names work in Docker Compose and in the local stack;
only the values differ. Defaults are the local stack's.

This module imports only the standard library: the DAG file imports it when Airflow parses it.
"""

from __future__ import annotations

import math
import os
import re
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]

# The id of the DAG that runs the producer (dags/kafka_stream.py); tools trigger it by this id.
DAG_ID = "user_automation"

# Who reads a variable. The first four are the pipeline, the same in Compose and in the local
# stack; STACK is the local stack's own tooling (./run.sh, script/), which also reads the
# pipeline's variables to create the topic, probe Cassandra and submit the stream job.
DAG = "DAG"
STREAM_JOB = "stream job"
SUBMIT = "spark-submit"  # the stream job's launch line: --master, --jars, --conf spark.ui.port
# Cassandra's set-up: the local stack's `up` and Compose's cassandra-init (`python -m
# pipeline.cassandra_schema`) create the keyspace, the tables and the stream job's role.
SETUP = "Cassandra set-up"
STACK = "local stack"
# The pipeline page (`script/monitor/`): the local stack's service and Compose's `monitor`.
MONITOR = "pipeline page"

# How a variable's value is read (see ``read``).
TEXT, WHOLE, NUMBER, MEMORY, URL = "text", "whole number", "number", "JVM memory size", "URL"
CQL_NAME = "Cassandra name"  # a keyspace, table or role, written unquoted in CQL

# In a default, "{repo}" is the repository and "{state}" the value of STACK_STATE_DIR.
_STATE = "{state}"


@dataclass(frozen=True)
class Variable:
    """One environment variable: its default, how it is read, who reads it, what it means."""

    name: str
    default: str
    help: str
    read_by: tuple[str, ...]
    kind: str = TEXT
    minimum: int = 0  # WHOLE and NUMBER: the smallest value allowed
    cluster: str | None = None  # the default when STACK_TOPOLOGY is cluster, None: the same
    maximum: int | None = None  # WHOLE and NUMBER: the largest value allowed, None: no bound
    choices: tuple[str, ...] = ()  # TEXT: the values allowed (any case), () for any text

    @property
    def side(self) -> str:
        """Either "stack" (only the local stack's tooling reads it) or "pipeline"."""
        return "stack" if self.read_by == (STACK,) else "pipeline"


def _var(
    name: str,
    default: str,
    help: str,
    *read_by: str,
    kind: str = TEXT,
    minimum: int = 0,
    cluster: str | None = None,
    maximum: int | None = None,
    choices: tuple[str, ...] = (),
) -> Variable:
    return Variable(name, default, help, read_by, kind, minimum, cluster, maximum, choices)


# A TCP port's rule.
PORT = {"kind": WHOLE, "minimum": 1, "maximum": 65535}


# The cluster topology's nodes: three hosts, loopback aliases on one machine (one node per host
# on real machines). Brokers and Cassandra nodes keep the standard ports, each on its address.
CLUSTER_HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
TOPOLOGIES = ("single", "cluster")

# KAFKA_COMPRESSION's values; "none" sends uncompressed batches.
COMPRESSIONS = ("none", "gzip", "lz4", "snappy", "zstd")
# SCHEMA_COMPATIBILITY's values: BACKWARD or stricter (a consumer always reads older records).
COMPATIBILITIES = ("BACKWARD", "BACKWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE")
# CASSANDRA_WRITE_CONSISTENCY's values: the ones a write of the connector can ask for.
CONSISTENCIES = ("ONE", "TWO", "THREE", "QUORUM", "LOCAL_ONE", "LOCAL_QUORUM", "EACH_QUORUM", "ALL")


# The table. Comments give the why of a default; `help` is the line README and --help show.
VARIABLES: tuple[Variable, ...] = (
    # Kafka
    _var(
        "KAFKA_BOOTSTRAP_SERVERS",
        "localhost:9092",
        "Kafka brokers (Compose: `broker:29092`); the local stack runs one broker per address",
        DAG,
        STREAM_JOB,
        cluster=",".join(f"{host}:9092" for host in CLUSTER_HOSTS),
    ),
    _var(
        "KAFKA_TOPIC",
        "users_created",
        "topic the DAG writes and the stream job reads",
        DAG,
        STREAM_JOB,
    ),
    _var(
        "KAFKA_TOPIC_PARTITIONS",
        "3",
        "partitions when set-up or the producer creates the topic",
        DAG,
        kind=WHOLE,
        minimum=1,
    ),
    _var(
        "KAFKA_REPLICATION_FACTOR",
        "1",
        "replication when set-up or the producer creates the topic",
        DAG,
        kind=WHOLE,
        minimum=1,
        cluster="3",
    ),
    # With acks=all, a write is acknowledged once this many replicas have it: one broker of
    # three may die without a write lost or refused.
    _var(
        "KAFKA_MIN_INSYNC_REPLICAS",
        "1",
        "the topic's `min.insync.replicas` when it is created: the producer's `acks=all` waits "
        "for this many replicas",
        DAG,
        kind=WHOLE,
        minimum=1,
        cluster="2",
    ),
    # lz4 (requirements.txt installs its library) compresses our records for about 1/20 of the
    # CPU of kafka-python's gzip, whose level it fixes at 9.
    _var(
        "KAFKA_COMPRESSION",
        "lz4",
        "producer compression: `none`, `gzip`, `lz4`, `snappy` or `zstd` (lz4 takes about 1/20 "
        "of the CPU of kafka-python's gzip, fixed at level 9; snappy and zstd need a library "
        "`requirements.txt` does not install)",
        DAG,
        choices=COMPRESSIONS,
    ),
    _var("KAFKA_LINGER_MS", "20", "producer batching delay", DAG, kind=WHOLE),
    _var("KAFKA_BATCH_SIZE", "262144", "producer batch size in bytes", DAG, kind=WHOLE, minimum=1),
    # kafka-python has no buffer_memory: at this many unacknowledged sends, a send waits.
    _var(
        "KAFKA_MAX_IN_FLIGHT_RECORDS",
        "20000",
        "most sends awaiting the broker's acknowledgement (the producer's memory bound, with "
        "one page prepared and one fetched ahead); at the limit a send waits, and a broker "
        "that acknowledges nothing for `KAFKA_DELIVERY_TIMEOUT_SECONDS` fails the run",
        DAG,
        kind=WHOLE,
        minimum=1,
    ),
    # kafka-python's own default; the bound of a run against a broker that stopped answering.
    _var(
        "KAFKA_DELIVERY_TIMEOUT_SECONDS",
        "120",
        "a send the broker has not acknowledged this long fails, and the run stops and fails "
        "with its counts",
        DAG,
        kind=NUMBER,
        minimum=1,
    ),
    # randomuser.me (or the bundled stand-in)
    _var("USERS_API_URL", "https://randomuser.me/api/", "the users API", DAG, kind=URL),
    _var(
        "USERS_PER_REQUEST",
        "5000",
        "users per request (`results=`, at most 5000)",
        DAG,
        kind=WHOLE,
        minimum=1,
        maximum=5000,  # what randomuser.me serves at most
    ),
    _var(
        "USERS_TOTAL",
        "0",
        "users per DAG run; 0: bounded by `USERS_RUN_SECONDS`",
        DAG,
        kind=WHOLE,
    ),
    _var(
        "USERS_RUN_SECONDS",
        "60",
        "time budget of a DAG run when `USERS_TOTAL` is 0 (paced: at most `USERS_PER_SECOND` "
        "× this many users)",
        DAG,
        kind=NUMBER,
    ),
    # The producer alone outruns the stream job, which keeps up with a few thousand users/s on
    # a 2-core machine: pacing keeps the pipeline real time. Tuned by measurement.
    _var(
        "USERS_PER_SECOND",
        "2000",
        "send rate of a DAG run, spread evenly; 0: unpaced (as fast as the API and Kafka allow)",
        DAG,
        kind=NUMBER,
    ),
    _var(
        "USERS_SEED",
        "",
        "randomuser seed; empty: derived from the DAG run's id (a retry fetches the same users), "
        "or a fresh one outside Airflow (logged, so a run can be replayed)",
        DAG,
    ),
    _var("USERS_START_PAGE", "1", "first page of the seed", DAG, kind=WHOLE, minimum=1),
    _var("USERS_NAT", "", "nationalities, e.g. `us,gb`; empty: all", DAG),
    _var("USERS_API_CONNECT_TIMEOUT", "5", "seconds", DAG, kind=NUMBER),
    _var("USERS_API_READ_TIMEOUT", "30", "seconds", DAG, kind=NUMBER),
    _var(
        "USERS_API_MAX_RETRIES",
        "5",
        "retries on timeouts, 5xx, 429 and error bodies",
        DAG,
        kind=WHOLE,
    ),
    _var(
        "USERS_API_BACKOFF_SECONDS",
        "1",
        "base of the exponential backoff (with jitter; `Retry-After` wins)",
        DAG,
        kind=NUMBER,
    ),
    # The DAG's task. A retry fetches the same users (same seed); Cassandra upserts by id.
    _var("DAG_TASK_RETRIES", "2", "retries of the DAG's task after a failure", DAG, kind=WHOLE),
    _var(
        "DAG_TASK_RETRY_DELAY_SECONDS",
        "30",
        "wait before each retry of the DAG's task",
        DAG,
        kind=NUMBER,
    ),
    # Far above a default run (60 s) and a stalled broker's bound (about 3 delivery timeouts).
    _var(
        "DAG_TASK_TIMEOUT_SECONDS",
        "3600",
        "Airflow's `execution_timeout` of one attempt of the DAG's task (raise it for runs of "
        "more than about an hour)",
        DAG,
        kind=NUMBER,
        minimum=1,
    ),
    # The schema registry (Confluent's REST API): the local stack runs Apicurio, whose
    # Confluent-compatible API is under /apis/ccompat/v7; Compose runs Confluent's.
    _var(
        "SCHEMA_REGISTRY_URL",
        "http://127.0.0.1:8081/apis/ccompat/v7",
        "the schema registry's Confluent REST API, where set-up and the producer publish the "
        "record's JSON Schema under `<KAFKA_TOPIC>-value` (Compose: `http://schema-registry:8081`)",
        DAG,
        kind=URL,
    ),
    _var(
        "SCHEMA_COMPATIBILITY",
        "BACKWARD",
        "the subject's compatibility mode (`BACKWARD` or stricter: `BACKWARD_TRANSITIVE`, "
        "`FULL`, `FULL_TRANSITIVE`); the producer refuses to run with an incompatible contract",
        DAG,
        choices=COMPATIBILITIES,  # the stream job must read records of an older schema
    ),
    # Cassandra
    _var(
        "CASSANDRA_HOST",
        "localhost",
        "Cassandra contact points, comma-separated (Compose: `cassandra`); the local stack runs "
        "one node per host, the first is the seed",
        STREAM_JOB,
        SETUP,
        cluster=",".join(CLUSTER_HOSTS),
    ),
    _var("CASSANDRA_PORT", "9042", "CQL port", STREAM_JOB, **PORT),
    # The stream job's own role: set-up grants it SELECT and MODIFY on the keyspace, nothing else.
    _var(
        "CASSANDRA_USERNAME",
        "pipeline_writer",
        "the stream job's login: a role that may only read and write the keyspace's rows "
        "(set-up creates it)",
        STREAM_JOB,
        SETUP,
        kind=CQL_NAME,
    ),
    # A local-stack default, like the superuser's; Compose generates one into .env.
    _var(
        "CASSANDRA_PASSWORD",
        "pipeline_writer",
        "its password; change it (set-up sets the role's password to this on every run)",
        STREAM_JOB,
        SETUP,
    ),
    # Never read by the job or the DAG: only set-up creates the schema and the writer's role.
    _var(
        "CASSANDRA_ADMIN_USERNAME",
        "cassandra",
        "a superuser: set-up creates the keyspace, tables and writer role with it; "
        "`./run.sh cqlsh` logs in with it",
        SETUP,
        kind=CQL_NAME,
    ),
    _var(
        "CASSANDRA_ADMIN_PASSWORD",
        "cassandra",
        "its password; set-up gives it to the role (logging in once as cassandra/cassandra) "
        "when the node does not know it yet",
        SETUP,
    ),
    _var(
        "CASSANDRA_KEYSPACE",
        "spark_streams",
        "keyspace set-up creates and the stream job writes",
        STREAM_JOB,
        SETUP,
        kind=CQL_NAME,
    ),
    _var("CASSANDRA_TABLE", "created_users", "table of users", STREAM_JOB, SETUP, kind=CQL_NAME),
    _var(
        "CASSANDRA_DEAD_LETTER_TABLE",
        "dead_letters",
        "table of rejected messages",
        STREAM_JOB,
        SETUP,
        kind=CQL_NAME,
    ),
    _var(
        "CASSANDRA_REPLICATION_FACTOR",
        "1",
        "replication of the keyspace (and of `system_auth`, so that logins survive a node)",
        SETUP,
        kind=WHOLE,
        minimum=1,
        cluster="3",
    ),
    # A quorum of the replicas: with RF 3 a write survives one node down and a read at quorum
    # sees it; with RF 1 it is the one node.
    _var(
        "CASSANDRA_WRITE_CONSISTENCY",
        "LOCAL_QUORUM",
        "the stream job's write consistency (`LOCAL_QUORUM`: a majority of the replicas)",
        STREAM_JOB,
        choices=CONSISTENCIES,
    ),
    # Spark stream job
    _var(
        "SPARK_MASTER",
        "local[*]",
        "Spark master (Compose: `spark://spark-master:7077`); a `spark://` one: the local stack "
        "runs it and `SPARK_WORKERS` workers, and the job is submitted to it in client mode",
        SUBMIT,
        cluster="spark://127.0.0.1:7077",
    ),
    _var(
        "SPARK_EXECUTOR_MEMORY",
        "512m",
        "each executor's memory on a `spark://` master",
        SUBMIT,
        kind=MEMORY,
    ),
    _var(
        "SPARK_CHECKPOINT_DIR",
        f"{_STATE}/data/spark/checkpoint",
        "the stream job's checkpoint (persistent)",
        STREAM_JOB,
    ),
    _var(
        "SPARK_TRIGGER_INTERVAL",
        "0 seconds",
        "micro-batch interval; 0: the next batch starts as soon as the last is committed",
        STREAM_JOB,
    ),
    # Caps a batch (a backlog is read in several). Near the highest rate the job sustains,
    # batches reach the cap, and a batch's fixed cost (planning, commits, the Python round
    # trip) weighs less in a bigger one: on 2 cores 40,000 sustained 25,000 users/s where
    # 20,000 sustained 23,000. Small enough that a batch takes about a second there, so no
    # row waits long for it (p99 under 3 s at that rate).
    _var(
        "SPARK_MAX_OFFSETS_PER_TRIGGER",
        "40000",
        "most messages per micro-batch (a backlog is read in several)",
        STREAM_JOB,
        kind=WHOLE,
        minimum=1,
    ),
    _var(
        "SPARK_STARTING_OFFSETS",
        "earliest",
        "where a job without a checkpoint starts",
        STREAM_JOB,
    ),
    # One task keeps a batch's fixed cost lowest (one Python worker round trip, one connector
    # writer): measured on 2 cores it halves latency at 1,000 users/s and sustains 8,000/s.
    _var(
        "SPARK_BATCH_PARTITIONS",
        "1",
        "Spark tasks per micro-batch; one keeps a batch's fixed cost lowest on a small machine, "
        "raise it with more cores or executors",
        STREAM_JOB,
        kind=WHOLE,
        minimum=1,
        cluster="2",
    ),
    # Spark's own default asks Kafka for new offsets every 10 ms while nothing flows: most of an
    # idle stack's CPU (the job's and Kafka's). While users flow, a batch always finds new ones
    # and never waits; only the first message after a quiet spell waits, half this on average.
    _var(
        "SPARK_IDLE_POLL_MS",
        "1000",
        "how often an idle query asks Kafka for new messages (ms); while messages flow the next "
        "batch starts at once",
        STREAM_JOB,
        kind=WHOLE,
        minimum=1,
    ),
    # A new JVM runs its first batches several times slower than later ones (classes loaded,
    # code compiled, the connector's session and Cassandra's own write path cold): measured
    # here, a job started just before a run at 2,000 users/s wrote its first 5 s of users
    # 1.5-3 s late. The warm-up streams synthetic users down the same path first.
    _var(
        "SPARK_WARM_UP_MESSAGES",
        "40000",
        "synthetic users the job streams Kafka -> parser -> Cassandra, into a topic and a table "
        "of their own (`<KAFKA_TOPIC>-warm-up`, deleted after; `<CASSANDRA_TABLE>_warm_up`, "
        "rows kept an hour), before it says it is ready, so its first real batches run warm; "
        "0: only start the Python workers and the connector's session, and load the table",
        STREAM_JOB,
        kind=WHOLE,
        minimum=0,
    ),
    _var(
        "SPARK_BATCH_TIMINGS",
        "false",
        "have Spark log each micro-batch's query progress (its phases' durationMs: "
        "latestOffset, queryPlanning, addBatch, walCommit, commitOffsets; numInputRows) to the "
        "job's log, as the benchmark's cost part does: Spark's own INFO line, written in the JVM",
        STREAM_JOB,
        choices=("true", "false"),
    ),
    # A batch takes seconds at most; Spark reports an idle query every 10 s.
    _var(
        "SPARK_STALL_SECONDS",
        "45",
        "a query that shows no sign of life this long (a batch begun or a write attempt ended: "
        "an attempt gives up within 35 s when Cassandra does not answer; an idle query reports "
        "every 10 s; five times this until the first batch begins) makes the job exit 1, and "
        "its supervisor starts it again",
        STREAM_JOB,
        kind=NUMBER,
    ),
    _var("SPARK_UI_PORT", "4040", "the stream job's Spark UI", SUBMIT, **PORT),
    _var(
        "SPARK_JARS_DIR",
        f"{_STATE}/jars/spark",
        "connector jars for `spark-submit --jars`",
        SUBMIT,
    ),
    # The local stack's own
    _var(
        "STACK_TOPOLOGY",
        "",
        "`single` (one node of each) or `cluster` (3 Cassandra nodes, 3 Kafka brokers, a Spark "
        "master and workers: the defaults marked cluster); empty: the topology of the last "
        "`up`, kept in `$STACK_STATE_DIR/data/topology`, else `single`",
        STACK,
        choices=TOPOLOGIES,
    ),
    _var(
        "STACK_STATE_DIR",
        "{repo}/.stack",
        "where the local stack keeps its venv, jars, data, logs and pid files",
        STACK,
    ),
    _var(
        "PYTHON",
        "",
        "the Python 3.11 that creates the venv; empty: `python3.11` or `python3` on PATH",
        STACK,
    ),
    _var("JAVA_HOME", "", "the Java 17 the services run on; empty: `java` on PATH", STACK),
    # Apicurio Registry 3 needs Java 21+, the other services run on 17.
    _var(
        "SCHEMA_REGISTRY_JAVA_HOME",
        "",
        "the Java 21 or newer the schema registry runs on; empty: `JAVA_HOME` if it is 21+, "
        "else the newest JDK 21+ under `/usr/lib/jvm`",
        STACK,
    ),
    _var(
        "SCHEMA_REGISTRY_PORT",
        "8081",
        "the schema registry's HTTP port (on 127.0.0.1)",
        STACK,
        **PORT,
    ),
    _var("SCHEMA_REGISTRY_HEAP", "256m", "the schema registry's heap", STACK, kind=MEMORY),
    _var("KAFKA_HEAP", "512m", "each Kafka broker's heap", STACK, kind=MEMORY, cluster="384m"),
    _var("CASSANDRA_HEAP", "1G", "each Cassandra node's heap", STACK, kind=MEMORY, cluster="768m"),
    # Node n's JMX port is this plus n - 1 (local JMX binds 127.0.0.1 whatever the node's host).
    _var(
        "CASSANDRA_JMX_PORT",
        "7199",
        "the first Cassandra node's JMX port (on 127.0.0.1; node n: this + n - 1), for nodetool",
        STACK,
        **PORT,
    ),
    # In client mode the driver only plans batches: the executors parse and write.
    _var(
        "SPARK_DRIVER_MEMORY",
        "1g",
        "the stream job's `--driver-memory` (Compose: read by spark-submit itself, `384m`)",
        STACK,
        kind=MEMORY,
        cluster="512m",
    ),
    _var(
        "SPARK_WORKERS",
        "2",
        "Spark workers the local stack runs with a `spark://` master",
        STACK,
        kind=WHOLE,
        minimum=1,
    ),
    # A job takes SPARK_BATCH_PARTITIONS cores, one executor each, spread over the workers:
    # two per worker leave room for a second job (the faults' or the benchmark's) beside it.
    _var(
        "SPARK_WORKER_CORES",
        "2",
        "cores (task slots) each Spark worker offers; a job takes `SPARK_BATCH_PARTITIONS` of "
        "them, one executor each",
        STACK,
        kind=WHOLE,
        minimum=1,
    ),
    _var("SPARK_WORKER_MEMORY", "1g", "memory each Spark worker offers", STACK, kind=MEMORY),
    _var(
        "SPARK_MASTER_UI_PORT",
        "9090",
        "the Spark master's web UI (workers and applications), as in Compose",
        STACK,
        **PORT,
    ),
    _var("ZOOKEEPER_PORT", "2181", "ZooKeeper's client port", STACK, **PORT),
    _var("POSTGRES_PORT", "5432", "PostgreSQL's port", STACK, **PORT),
    _var("POSTGRES_USER", "airflow", "Airflow's PostgreSQL login", STACK),
    _var("POSTGRES_PASSWORD", "airflow", "its password", STACK),
    _var("POSTGRES_DB", "airflow", "Airflow's metadata database", STACK),
    _var("AIRFLOW_PORT", "8080", "Airflow's UI and API server", STACK, **PORT),
    _var("AIRFLOW_ADMIN_USERNAME", "admin", "Airflow's admin login", STACK),
    _var(
        "AIRFLOW_ADMIN_PASSWORD",
        "",
        "its password; empty: generated on the first `up`, kept in "
        "`$STACK_STATE_DIR/data/airflow/admin-password`",
        STACK,
    ),
    _var(
        "AIRFLOW__CORE__PARALLELISM",
        "4",
        "task instances Airflow runs at once",
        STACK,
        kind=WHOLE,
        minimum=1,
    ),
    # The pipeline page: Control Center's port, which the local stack does not otherwise use.
    _var(
        "MONITOR_PORT",
        "9021",
        "the live pipeline page's HTTP port, on 127.0.0.1 (Compose: `9022`, since Control "
        "Center holds 9021)",
        MONITOR,
        kind=WHOLE,
        minimum=1,
    ),
    _var(
        "MONITOR_SPARK_UI_URL",
        "",
        "the stream job's Spark UI as the pipeline page reaches it; empty: "
        "`http://127.0.0.1:<SPARK_UI_PORT>` (Compose: `http://spark-stream:4040`)",
        MONITOR,
    ),
    _var(
        "MONITOR_AIRFLOW_URL",
        "",
        "Airflow's API server as the pipeline page reaches it; empty: "
        "`http://127.0.0.1:<AIRFLOW_PORT>` (Compose: `http://airflow-apiserver:8080`)",
        MONITOR,
    ),
    _var(
        "USERS_STANDIN_PORT",
        "8765",
        "port of the bundled randomuser stand-in (offline runs)",
        STACK,
        **PORT,
    ),
)

BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}

# The pipeline's variables and their defaults as the table writes them (paths as "{state}/...").
DEFAULTS: dict[str, str] = {v.name: v.default for v in VARIABLES if v.side == "pipeline"}

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
_JSON_TYPES = {WHOLE: "integer", NUMBER: "number"}


def param_schema(name: str, unset: int | None) -> dict[str, object]:
    """Run parameter ``name``'s JSON Schema (the type and bounds of the DAG's ``Param``), from
    the rule of the variable it overrides, so that the two cannot drift apart.

    ``unset`` is the parameter's default, the value meaning "use the environment": None (the
    Trigger form's empty field, so "null" is a type too) or 0 (so 0 is allowed too).
    """
    variable = BY_NAME[RUN_PARAMS[name]]
    json_type = _JSON_TYPES.get(variable.kind, "string")
    schema: dict[str, object] = {"type": json_type if unset is not None else ["null", json_type]}
    if variable.kind in _JSON_TYPES:
        schema["minimum"] = variable.minimum if unset is None else min(unset, variable.minimum)
        if variable.maximum is not None:
            schema["maximum"] = variable.maximum
    if variable.choices:
        schema["enum"] = [*variable.choices, *([None] if unset is None else [])]
    return schema


_MEMORY = re.compile(r"[1-9][0-9]*[kKmMgG]?")
# Unquoted CQL identifiers: a letter, then letters, digits or underscores; at most 48 long.
_CQL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


def _raw(env: Mapping[str, str], name: str) -> str:
    value = env.get(name)
    if value is not None and value != "":
        return value
    variable = BY_NAME[name]
    cluster = variable.cluster is not None and topology(env) == "cluster"
    default = variable.cluster if cluster and variable.cluster is not None else variable.default
    if _STATE in default:
        return default.replace(_STATE, str(state_dir(env)))
    return default.replace("{repo}", str(REPO_ROOT))


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """STACK_STATE_DIR (default ``<repo>/.stack``): the stack's files, and the default paths."""
    return Path(_raw(os.environ if env is None else env, "STACK_STATE_DIR"))


def topology_record(env: Mapping[str, str] | None = None) -> Path:
    """Where `up` keeps the topology it brought the stack up with (its data is of it)."""
    return state_dir(env) / "data" / "topology"


def topology(env: Mapping[str, str] | None = None) -> str:
    """STACK_TOPOLOGY, else the topology of the stack's last `up`, else "single"."""
    env = os.environ if env is None else env
    raw = env.get("STACK_TOPOLOGY") or ""
    if not raw:
        try:
            raw = topology_record(env).read_text().strip()
        except OSError:
            raw = "single"
    return str(checked("STACK_TOPOLOGY", raw))


def rule(variable: Variable) -> str:
    """What ``variable`` allows, as the refusal of a bad value says it: "a whole number >= 1"."""
    if variable.choices:
        return f"one of {', '.join(variable.choices)}"
    if variable.kind in (WHOLE, NUMBER):
        if variable.maximum is None:
            return f"a {variable.kind} >= {variable.minimum}"
        return f"a {variable.kind} from {variable.minimum} to {variable.maximum}"
    return {
        MEMORY: "a JVM memory size such as 512m or 1g",
        URL: "an http:// or https:// URL",
        CQL_NAME: "a Cassandra name (a letter, then letters, digits or _; at most 48 characters)",
    }.get(variable.kind, "any text")


def read(variable: Variable, raw: str) -> str | int | float:
    """``raw`` read by ``variable``'s rule in the table (a choice as the table spells it).

    Raises ``ValueError`` saying what is allowed ("... is needed"), without the variable's
    name: a setting's refusal and a command-line option's each put their own name in front.
    """
    if _allowed(variable, raw):
        if variable.choices:
            return next(c for c in variable.choices if c.lower() == raw.lower())
        if variable.kind in (WHOLE, NUMBER):
            return int(raw) if variable.kind == WHOLE else float(raw)
        return raw
    raise ValueError(f"{rule(variable)} is needed")


def _allowed(variable: Variable, raw: str) -> bool:
    if variable.choices:
        return raw.lower() in (c.lower() for c in variable.choices)
    if variable.kind in (MEMORY, CQL_NAME):
        return bool((_MEMORY if variable.kind == MEMORY else _CQL_NAME).fullmatch(raw))
    if variable.kind == URL:
        parts = urlsplit(raw)
        return parts.scheme in ("http", "https") and bool(parts.netloc)
    if variable.kind not in (WHOLE, NUMBER):
        return True
    try:
        value = int(raw) if variable.kind == WHOLE else float(raw)
    except ValueError:
        return False
    top = math.inf if variable.maximum is None else variable.maximum
    return math.isfinite(value) and variable.minimum <= value <= top


def checked(name: str, raw: str) -> str | int | float:
    """``raw`` read by variable ``name``'s rule, else ConfigError naming it, the value, the rule."""
    try:
        return read(BY_NAME[name], raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r}: {exc}") from None


def _parse(env: Mapping[str, str], name: str) -> str | int | float:
    return checked(name, _raw(env, name))


def _text(env: Mapping[str, str], name: str) -> str:
    return str(_parse(env, name))


def _int(env: Mapping[str, str], name: str) -> int:
    return int(_parse(env, name))


def _float(env: Mapping[str, str], name: str) -> float:
    return float(_parse(env, name))


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
    delivery_timeout_seconds: float
    min_insync_replicas: int = 1

    @property
    def warm_up_topic(self) -> str:
        """The stream job's scratch topic for its warm-up (created and deleted by the job)."""
        return f"{self.topic}-warm-up"

    @property
    def brokers(self) -> list[tuple[str, int]]:
        """The (host, port) of each bootstrap server."""
        return [_host_port(a, 9092) for a in self.bootstrap_servers.split(",") if a.strip()]


def _host_port(address: str, port: int) -> tuple[str, int]:
    host, _, number = address.strip().rpartition(":")
    return (host, int(number)) if host and number.isdigit() else (address.strip(), port)


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
    password: str = field(repr=False)
    keyspace: str
    table: str
    dead_letter_table: str
    replication_factor: int
    write_consistency: str = "LOCAL_QUORUM"
    # The variables that hold this login, for error messages.
    login_variables: str = "CASSANDRA_USERNAME and CASSANDRA_PASSWORD"

    @property
    def warm_up_table(self) -> str:
        """The stream job's scratch table for its warm-up: the users' columns, rows kept an hour
        (set-up creates it with the others)."""
        return f"{self.table}_warm_up"

    @property
    def hosts(self) -> list[str]:
        """The contact points (CASSANDRA_HOST, comma-separated)."""
        return [h.strip() for h in self.host.split(",") if h.strip()]


@dataclass(frozen=True)
class CassandraLogin:
    """The admin's login (CASSANDRA_ADMIN_*): set-up and ``./run.sh cqlsh`` use it, through
    ``cassandra_admin()``; the stream job and the DAG never do."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class RegistrySettings:
    url: str
    compatibility: str


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
    executor_memory: str = "512m"
    idle_poll_ms: int = 1000
    batch_timings: str = "false"  # "true": each batch's phases logged
    warm_up_messages: int = 40_000


@dataclass(frozen=True)
class StackSettings:
    """The local stack's own settings (./run.sh, script/); Compose has its own."""

    topology: str
    state_dir: Path
    python: str
    java_home: str
    registry_java_home: str
    registry_port: int
    registry_heap: str
    kafka_heap: str
    cassandra_heap: str
    cassandra_jmx_port: int
    spark_driver_memory: str
    spark_workers: int
    spark_worker_cores: int
    spark_worker_memory: str
    spark_master_ui_port: int
    zookeeper_port: int
    postgres_port: int
    postgres_user: str
    postgres_password: str = field(repr=False)
    postgres_db: str
    airflow_port: int
    airflow_admin_username: str
    airflow_admin_password: str = field(repr=False)  # empty: the stack generates one
    airflow_parallelism: int
    standin_port: int

    @property
    def airflow_url(self) -> str:
        """The local Airflow API server's base URL."""
        return f"http://127.0.0.1:{self.airflow_port}"


@dataclass(frozen=True)
class MonitorSettings:
    """The pipeline page's: its port, and where it reaches Spark's UI and Airflow's API
    (empty: the local stack's, see ``monitor_urls``)."""

    port: int
    spark_ui_url: str
    airflow_url: str


def monitor_urls(settings: Settings) -> tuple[str, str]:
    """(Spark UI, Airflow API server) as the pipeline page reaches them: MONITOR_SPARK_UI_URL
    and MONITOR_AIRFLOW_URL, else the local stack's on SPARK_UI_PORT and AIRFLOW_PORT."""
    m = settings.monitor
    return (
        m.spark_ui_url or f"http://127.0.0.1:{settings.stream.ui_port}",
        m.airflow_url or settings.stack.airflow_url,
    )


@dataclass(frozen=True)
class TaskSettings:
    """How Airflow runs the DAG's task: retries, the wait between them, one attempt's limit."""

    retries: int
    retry_delay_seconds: float
    timeout_seconds: float


def load_task(env: Mapping[str, str] | None = None) -> TaskSettings:
    """The DAG task's settings (read when Airflow parses the DAG); ``ConfigError`` if unusable."""
    env = os.environ if env is None else env
    return TaskSettings(
        retries=_int(env, "DAG_TASK_RETRIES"),
        retry_delay_seconds=_float(env, "DAG_TASK_RETRY_DELAY_SECONDS"),
        timeout_seconds=_float(env, "DAG_TASK_TIMEOUT_SECONDS"),
    )


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings
    api: ApiSettings
    cassandra: CassandraSettings
    cassandra_admin: CassandraLogin
    registry: RegistrySettings
    stream: StreamSettings
    stack: StackSettings
    task: TaskSettings
    monitor: MonitorSettings


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``env`` (default ``os.environ``).

    Raises ``ConfigError`` naming the variable when a value is unusable.
    """
    env = os.environ if env is None else env
    settings = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=_text(env, "KAFKA_BOOTSTRAP_SERVERS"),
            topic=_text(env, "KAFKA_TOPIC"),
            partitions=_int(env, "KAFKA_TOPIC_PARTITIONS"),
            replication_factor=_int(env, "KAFKA_REPLICATION_FACTOR"),
            compression=_text(env, "KAFKA_COMPRESSION"),
            linger_ms=_int(env, "KAFKA_LINGER_MS"),
            batch_size=_int(env, "KAFKA_BATCH_SIZE"),
            max_in_flight_records=_int(env, "KAFKA_MAX_IN_FLIGHT_RECORDS"),
            delivery_timeout_seconds=_float(env, "KAFKA_DELIVERY_TIMEOUT_SECONDS"),
            min_insync_replicas=_int(env, "KAFKA_MIN_INSYNC_REPLICAS"),
        ),
        api=ApiSettings(
            url=_text(env, "USERS_API_URL"),
            per_request=_int(env, "USERS_PER_REQUEST"),
            total=_int(env, "USERS_TOTAL"),
            run_seconds=_float(env, "USERS_RUN_SECONDS"),
            per_second=_float(env, "USERS_PER_SECOND"),
            seed=_text(env, "USERS_SEED"),
            start_page=_int(env, "USERS_START_PAGE"),
            nat=_text(env, "USERS_NAT"),
            connect_timeout=_float(env, "USERS_API_CONNECT_TIMEOUT"),
            read_timeout=_float(env, "USERS_API_READ_TIMEOUT"),
            max_retries=_int(env, "USERS_API_MAX_RETRIES"),
            backoff_seconds=_float(env, "USERS_API_BACKOFF_SECONDS"),
        ),
        cassandra=CassandraSettings(
            host=_text(env, "CASSANDRA_HOST"),
            port=_int(env, "CASSANDRA_PORT"),
            username=_text(env, "CASSANDRA_USERNAME"),
            password=_text(env, "CASSANDRA_PASSWORD"),
            keyspace=_text(env, "CASSANDRA_KEYSPACE"),
            table=_text(env, "CASSANDRA_TABLE"),
            dead_letter_table=_text(env, "CASSANDRA_DEAD_LETTER_TABLE"),
            replication_factor=_int(env, "CASSANDRA_REPLICATION_FACTOR"),
            write_consistency=_text(env, "CASSANDRA_WRITE_CONSISTENCY"),
        ),
        cassandra_admin=CassandraLogin(
            username=_text(env, "CASSANDRA_ADMIN_USERNAME"),
            password=_text(env, "CASSANDRA_ADMIN_PASSWORD"),
        ),
        registry=RegistrySettings(
            url=_text(env, "SCHEMA_REGISTRY_URL"),
            compatibility=_text(env, "SCHEMA_COMPATIBILITY"),
        ),
        stream=StreamSettings(
            master=_text(env, "SPARK_MASTER"),
            checkpoint_dir=_text(env, "SPARK_CHECKPOINT_DIR"),
            trigger_interval=_text(env, "SPARK_TRIGGER_INTERVAL"),
            max_offsets_per_trigger=_int(env, "SPARK_MAX_OFFSETS_PER_TRIGGER"),
            starting_offsets=_text(env, "SPARK_STARTING_OFFSETS"),
            stall_seconds=_float(env, "SPARK_STALL_SECONDS"),
            batch_partitions=_int(env, "SPARK_BATCH_PARTITIONS"),
            ui_port=_int(env, "SPARK_UI_PORT"),
            jars_dir=_text(env, "SPARK_JARS_DIR"),
            executor_memory=_text(env, "SPARK_EXECUTOR_MEMORY"),
            idle_poll_ms=_int(env, "SPARK_IDLE_POLL_MS"),
            batch_timings=_text(env, "SPARK_BATCH_TIMINGS"),
            warm_up_messages=_int(env, "SPARK_WARM_UP_MESSAGES"),
        ),
        stack=StackSettings(
            topology=topology(env),
            state_dir=state_dir(env),
            python=_text(env, "PYTHON"),
            java_home=_text(env, "JAVA_HOME"),
            registry_java_home=_text(env, "SCHEMA_REGISTRY_JAVA_HOME"),
            registry_port=_int(env, "SCHEMA_REGISTRY_PORT"),
            registry_heap=_text(env, "SCHEMA_REGISTRY_HEAP"),
            kafka_heap=_text(env, "KAFKA_HEAP"),
            cassandra_heap=_text(env, "CASSANDRA_HEAP"),
            cassandra_jmx_port=_int(env, "CASSANDRA_JMX_PORT"),
            spark_driver_memory=_text(env, "SPARK_DRIVER_MEMORY"),
            spark_workers=_int(env, "SPARK_WORKERS"),
            spark_worker_cores=_int(env, "SPARK_WORKER_CORES"),
            spark_worker_memory=_text(env, "SPARK_WORKER_MEMORY"),
            spark_master_ui_port=_int(env, "SPARK_MASTER_UI_PORT"),
            zookeeper_port=_int(env, "ZOOKEEPER_PORT"),
            postgres_port=_int(env, "POSTGRES_PORT"),
            postgres_user=_text(env, "POSTGRES_USER"),
            postgres_password=_text(env, "POSTGRES_PASSWORD"),
            postgres_db=_text(env, "POSTGRES_DB"),
            airflow_port=_int(env, "AIRFLOW_PORT"),
            airflow_admin_username=_text(env, "AIRFLOW_ADMIN_USERNAME"),
            airflow_admin_password=_text(env, "AIRFLOW_ADMIN_PASSWORD"),
            airflow_parallelism=_int(env, "AIRFLOW__CORE__PARALLELISM"),
            standin_port=_int(env, "USERS_STANDIN_PORT"),
        ),
        task=load_task(env),
        monitor=MonitorSettings(
            port=_int(env, "MONITOR_PORT"),
            spark_ui_url=_text(env, "MONITOR_SPARK_UI_URL").rstrip("/"),
            airflow_url=_text(env, "MONITOR_AIRFLOW_URL").rstrip("/"),
        ),
    )
    check_writer(settings.cassandra.username, settings.cassandra_admin.username)
    return settings


def check_bounded(api: ApiSettings) -> None:
    """``ConfigError`` when nothing bounds a run: no ``USERS_TOTAL`` and no time budget."""
    if api.total == 0 and api.run_seconds <= 0:
        raise ConfigError("USERS_TOTAL=0 and USERS_RUN_SECONDS=0: set one of them to bound the run")


def check_writer(writer: str, admin: str | None) -> None:
    """``ConfigError`` when the stream job's role is the admin (set-up grants it rights)."""
    if writer == admin:
        raise ConfigError(
            f"CASSANDRA_USERNAME={writer!r} is the admin login: give the stream job a role of its "
            "own (default pipeline_writer), set-up grants it only read and write"
        )


def cassandra_admin(env: Mapping[str, str] | None = None) -> CassandraSettings:
    """The Cassandra settings with the admin login (``CASSANDRA_ADMIN_*``) in place of the
    stream job's: for set-up and ``./run.sh cqlsh`` only, never for the job or the DAG."""
    settings = load(env)
    return replace(
        settings.cassandra,
        username=settings.cassandra_admin.username,
        password=settings.cassandra_admin.password,
        login_variables="CASSANDRA_ADMIN_USERNAME and CASSANDRA_ADMIN_PASSWORD",
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


# --------------------------------------------------------------------------- documentation


def shown_default(variable: Variable) -> str:
    """A default as README and --help show it: paths relative to the repository."""
    return variable.default.replace("{repo}/", "").replace(_STATE, "$STACK_STATE_DIR")


def markdown() -> str:
    """README's configuration table, one row per variable of ``VARIABLES``."""
    rows = ["| Variable | Default | Read by | Meaning |", "| --- | --- | --- | --- |"]
    for v in VARIABLES:
        default = f"`{shown_default(v)}`" if v.default else "(empty)"
        if v.cluster is not None:
            default += f"; cluster: `{v.cluster}`"
        rows.append(f"| `{v.name}` | {default} | {', '.join(v.read_by)} | {v.help} |")
    return "\n".join(rows) + "\n"


def variables_help(reader: str) -> str:
    """The variables ``reader`` reads, with default and help, for a command's ``--help``."""
    lines = []
    for v in VARIABLES:
        if reader in v.read_by:
            lines.append(f"  {v.name}={shown_default(v)!r}")
            lines.append(
                textwrap.fill(
                    v.help.replace("`", ""), 96, initial_indent=" " * 6, subsequent_indent=" " * 6
                )
            )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[1:] != ["--markdown"]:
        print("usage: python -m pipeline.config --markdown  (README's configuration table)")
        return 2
    sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
