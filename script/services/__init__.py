"""The registry of the local stack's services: one line each, one module each.

`STACK` is what `./run.sh up` starts, in this order (and `down` stops in reverse);
`ON_DEMAND` are started by the commands that need them (`./run.sh stream`, an offline run, the
benchmark) and stopped by `down`.
"""

from __future__ import annotations

from script.services.airflow import Airflow
from script.services.base import Process, Service
from script.services.cassandra import Cassandra
from script.services.kafka import Kafka
from script.services.postgres import Postgres
from script.services.registry import SchemaRegistry
from script.services.standin import StandIn
from script.services.stream import StreamJob
from script.services.zookeeper import ZooKeeper

STACK: list[Service] = [
    Postgres(),
    ZooKeeper(),
    Kafka(),
    SchemaRegistry(),
    Cassandra(),
    Airflow(),
]
STREAM = StreamJob()
STANDIN = StandIn()
ON_DEMAND: list[Service] = [STREAM, STANDIN]
ALL: list[Service] = [*STACK, *ON_DEMAND]


def named(name: str) -> Service:
    """The service called ``name``; StackError-free: a KeyError names the known ones."""
    for service in ALL:
        if service.name == name:
            return service
    raise KeyError(f"no service {name!r}; known: {', '.join(s.name for s in ALL)}")


__all__ = ["ALL", "ON_DEMAND", "STACK", "STANDIN", "STREAM", "Process", "Service", "named"]
