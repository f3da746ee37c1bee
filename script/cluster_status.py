"""The CLUSTER half of `./run.sh status`: every node with its role and health, and the
replication of the topic and the keyspace (what a node that rejoins still has to catch up)."""

from __future__ import annotations

from typing import Any

from pipeline import config
from script.services import STACK
from script.services.cassandra import Cassandra
from script.services.kafka import Kafka
from script.services.spark import SparkMaster, SparkWorker, master_state


def cluster_lines(settings: config.Settings) -> list[str]:
    """CLUSTER: Kafka's brokers and topic, Cassandra's ring and keyspace, Spark's workers."""
    return [
        f"CLUSTER ({settings.stack.topology} topology)",
        *kafka_lines(settings),
        *cassandra_lines(settings),
        *spark_lines(),
    ]


def _row(name: str, where: str, role: str, health: str, more: str = "") -> str:
    return f"  {name:<16}{where:<18}{role:<22}{health:<6}{more}".rstrip()


def kafka_lines(settings: config.Settings) -> list[str]:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType
    from kafka.errors import KafkaError

    brokers = [s for s in STACK if isinstance(s, Kafka)]
    k = settings.kafka
    try:
        admin = KafkaAdminClient(bootstrap_servers=k.bootstrap_servers, request_timeout_ms=5000)
    except (KafkaError, OSError) as exc:
        return [_row(b.name, f"{b.host}:{b.port}", "broker", "down") for b in brokers] + [
            f"  kafka is not answering ({exc.__class__.__name__})"
        ]
    try:
        cluster = admin.describe_cluster()
        (topic,) = admin.describe_topics([k.topic])
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, k.topic)])
    except (KafkaError, OSError, ValueError) as exc:
        return [f"  kafka is not answering ({exc.__class__.__name__})"]
    finally:
        admin.close()
    registered = {b["broker_id"] for b in cluster.get("brokers", [])}
    partitions = sorted(topic.get("partitions") or [], key=lambda p: p["partition_index"])
    lines = []
    for b in brokers:
        broker_id = b.broker - 1
        role = f"broker {broker_id}"
        if cluster.get("controller_id") == broker_id:
            role += " (controller)"
        leads = [f"p{p['partition_index']}" for p in partitions if p["leader_id"] == broker_id]
        health = "up" if broker_id in registered else "down"
        lines.append(
            _row(b.name, f"{b.host}:{b.port}", role, health, f"leads {', '.join(leads) or '-'}")
        )
    if not partitions:
        return [*lines, f"  topic {k.topic}: not created yet"]
    replicas = {len(p["replica_nodes"]) for p in partitions}
    behind = [p for p in partitions if len(p["isr_nodes"]) < len(p["replica_nodes"])]
    min_isr = _value(configs, k.topic, "min.insync.replicas")
    lines.append(
        f"  topic {k.topic}: {len(partitions)} partitions x {'/'.join(map(str, replicas))} "
        f"replicas, min.insync.replicas {min_isr}; under-replicated {len(behind)}"
        + "".join(
            f"; p{p['partition_index']} in sync {p['isr_nodes']} of {p['replica_nodes']}"
            for p in behind
        )
    )
    return lines


def _value(configs: Any, topic: str, key: str) -> str:
    try:
        return configs["topic"][topic][key]["value"]
    except (KeyError, TypeError):
        return "broker default"


def cassandra_lines(settings: config.Settings) -> list[str]:
    """Each node asked on its own (up: it answers CQL), with the hints the others hold for it."""
    from cassandra import DriverException
    from cassandra.cluster import NoHostAvailable

    from pipeline import cassandra_schema

    nodes = [s for s in STACK if isinstance(s, Cassandra)]
    held = {n.name: n.hints_held() for n in nodes}
    lines = []
    for n in nodes:
        owed = sum((h or {}).get(n.host, 0) for name, h in held.items() if name != n.name)
        more = f"the others hold {owed} hint file(s) for it" if owed else ""
        role = "seed" if n.node == 1 else "node"
        health = "down" if held[n.name] is None else "up"
        lines.append(_row(n.name, f"{n.host}:{n.port}", role, health, more))
    if all(h is None for h in held.values()):
        return [*lines, "  cassandra is not answering"]
    keyspace = settings.cassandra.keyspace
    try:
        session = cassandra_schema.connect(config.cassandra_admin(), connect_timeout=3)
        try:
            replicas = cassandra_schema.replication_factor(session, keyspace)
            auth = cassandra_schema.replication_factor(session, "system_auth")
        finally:
            session.cluster.shutdown()
    except (cassandra_schema.CassandraUnavailable, DriverException, NoHostAvailable) as exc:
        return [*lines, f"  keyspace {keyspace}: no answer ({exc.__class__.__name__})"]
    return [
        *lines,
        f"  keyspace {keyspace}: {replicas} replicas (system_auth {auth}), the job writes at "
        f"{settings.cassandra.write_consistency}",
    ]


def spark_lines() -> list[str]:
    master = next((s for s in STACK if isinstance(s, SparkMaster)), None)
    if master is None:
        return [f"  spark: {config.load().stream.master} (in the stream job's process)"]
    state = master_state()
    workers = [s for s in STACK if isinstance(s, SparkWorker)]
    if state is None:
        where = f"{master.host}:{master.port}"
        return [_row(master.name, where, "master", "down")] + [
            _row(w.name, "", "worker", "?") for w in workers
        ]
    alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
    apps = ", ".join(f"{a['name']} ({a['cores']} cores)" for a in state.get("activeapps", []))
    lines = [
        _row(
            master.name,
            f"{master.host}:{master.port}",
            "master",
            "up" if state.get("status") == "ALIVE" else str(state.get("status")).lower(),
            f"workers alive {len(alive)} of {len(workers)}; running {apps or 'no application'}",
        )
    ]
    for w in state.get("workers", []):
        if w.get("state") == "DEAD":
            continue
        lines.append(
            _row(
                "",
                f"{w.get('host')}:{w.get('port')}",
                "worker",
                str(w.get("state")).lower().replace("alive", "up"),
                f"cores {w.get('coresused')}/{w.get('cores')} used",
            )
        )
    return lines
