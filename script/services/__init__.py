"""The registry of the local stack's services: one module each.

`STACK` is what `./run.sh up` starts, in this order (and `down` stops in reverse): one
Cassandra node per CASSANDRA_HOST, one Kafka broker per address of KAFKA_BOOTSTRAP_SERVERS, a
Spark master and SPARK_WORKERS workers when SPARK_MASTER is `spark://` (the cluster topology's
defaults: 3, 3 and 2), Airflow, and last the pipeline page that watches them all. `ON_DEMAND`
are started by the commands that need them (`./run.sh stream`, an offline run, the benchmark)
and stopped by `down`.
"""

from __future__ import annotations

from pipeline import config
from script.services.airflow import Airflow
from script.services.base import Process, Service
from script.services.cassandra import Cassandra
from script.services.kafka import Kafka
from script.services.monitor import Monitor
from script.services.postgres import Postgres
from script.services.registry import SchemaRegistry
from script.services.spark import SparkMaster, SparkWorker
from script.services.standin import StandIn
from script.services.stream import StreamJob
from script.services.zookeeper import ZooKeeper


def _stack() -> list[Service]:
    try:
        settings = config.load()
    except config.ConfigError:
        settings = None  # the command that reads the setting names it
    nodes = len(settings.cassandra.hosts) if settings else 1
    brokers = len(settings.kafka.brokers) if settings else 1
    spark: list[Service] = []
    if settings and settings.stream.master.startswith("spark://"):
        workers = [SparkWorker(n) for n in range(1, settings.stack.spark_workers + 1)]
        spark = [SparkMaster(), *workers]
    return [
        Postgres(),
        ZooKeeper(),
        *(Kafka(n) for n in range(1, brokers + 1)),
        SchemaRegistry(),
        *(Cassandra(n) for n in range(1, nodes + 1)),
        *spark,
        Airflow(),
        Monitor(),
    ]


STACK: list[Service] = _stack()
STREAM = StreamJob()
STANDIN = StandIn()
ON_DEMAND: list[Service] = [STREAM, STANDIN]
ALL: list[Service] = [*STACK, *ON_DEMAND]


def pipeline_services() -> list[str]:
    """What a stream job of its own (faults, benchmark) runs against: every node of ZooKeeper,
    Kafka, the schema registry, Cassandra and Spark's standalone cluster; not Airflow, its
    database, nor the pipeline page."""
    return [s.name for s in STACK if not isinstance(s, Postgres | Airflow | Monitor)]


def named(name: str) -> Service:
    """The service called ``name``; StackError-free: a KeyError names the known ones."""
    for service in ALL:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r}; known: {', '.join(s.name for s in ALL)}")


__all__ = [
    "ALL",
    "ON_DEMAND",
    "STACK",
    "STANDIN",
    "STREAM",
    "Process",
    "Service",
    "named",
    "pipeline_services",
]
