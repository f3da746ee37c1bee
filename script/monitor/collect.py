"""What the pipeline page shows, read from the services themselves: one function per question.

Each function takes the clients it needs and returns plain data (dicts, lists, numbers), so a
test can call it against the real stack and the page (`app.py`) only lays it out. Nothing here
writes: the Kafka consumer has no group (it commits nothing), Cassandra is only selected from,
the registry and Airflow are only read.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import requests

from pipeline import contract
from pipeline.config import Settings
from script.airflow_api import AirflowError
from script.pipeline_status import checkpoint_offsets

# --------------------------------------------------------------------------- Kafka


def brokers(admin: Any, settings: Settings) -> dict[str, Any]:
    """Each broker (registered or only configured), whether it is up, the controller, the
    partitions of the topic it leads; the topic's partitions and the under-replicated ones."""
    cluster = admin.describe_cluster()
    (topic,) = admin.describe_topics([settings.kafka.topic])
    partitions = sorted(topic.get("partitions") or [], key=lambda p: p["partition_index"])
    registered = {(b["host"], b["port"]): b["broker_id"] for b in cluster.get("brokers", [])}
    rows = []
    for broker_id in sorted(registered.values()):
        host, port = next(a for a, i in registered.items() if i == broker_id)
        rows.append(_broker_row(broker_id, f"{host}:{port}", True, cluster, partitions))
    if len(registered) < len(settings.kafka.brokers):  # a configured broker that is away
        known = {f"{h}:{p}" for h, p in registered}
        for host, port in settings.kafka.brokers:
            if f"{host}:{port}" not in known and len(rows) < len(settings.kafka.brokers):
                rows.append(_broker_row(None, f"{host}:{port}", False, cluster, partitions))
    behind = [
        {
            "partition": p["partition_index"],
            "in_sync": p["isr_nodes"],
            "replicas": p["replica_nodes"],
        }
        for p in partitions
        if len(p["isr_nodes"]) < len(p["replica_nodes"])
    ]
    return {
        "brokers": rows,
        "partitions": [
            {
                "partition": p["partition_index"],
                "leader": p["leader_id"],
                "replicas": p["replica_nodes"],
                "in_sync": p["isr_nodes"],
            }
            for p in partitions
        ],
        "under_replicated": behind,
    }


def _broker_row(
    broker_id: int | None, address: str, up: bool, cluster: dict, partitions: list[dict]
) -> dict[str, Any]:
    leads = [p["partition_index"] for p in partitions if p["leader_id"] == broker_id]
    return {
        "id": broker_id,
        "address": address,
        "up": up,
        "controller": broker_id is not None and cluster.get("controller_id") == broker_id,
        "leads": leads if broker_id is not None else [],
    }


def partition_bytes(admin: Any, topic: str, leaders: dict[int, int]) -> dict[int, int]:
    """Partition -> bytes of its log on its leader (what `describe_log_dirs` reports)."""
    sizes: dict[int, int] = {}
    for broker in admin.describe_log_dirs():
        for log_dir in broker.get("log_dirs", []):
            for t in log_dir.get("topics", []):
                if t["name"] != topic:
                    continue
                for p in t["partitions"]:
                    if leaders.get(p["partition_index"]) == broker["broker"]:
                        sizes[p["partition_index"]] = p["partition_size"]
    return sizes


def end_offsets(consumer: Any, topic: str) -> dict[int, int]:
    """Partition -> the next offset to be written (messages so far); {} without the topic."""
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    return {tp.partition: o for tp, o in consumer.end_offsets(tps).items()} if tps else {}


def latest_messages(
    consumer: Any, topic: str, ends: dict[int, int], per_partition: int
) -> list[dict[str, Any]]:
    """The last ``per_partition`` messages of each partition, newest first (by Kafka time)."""
    from kafka import TopicPartition

    starts = consumer.beginning_offsets([TopicPartition(topic, p) for p in ends])
    wanted = {
        tp: (max(starts[tp], ends[tp.partition] - per_partition), ends[tp.partition])
        for tp in starts
        if ends[tp.partition] > starts[tp]
    }
    return sorted(_read(consumer, wanted), key=lambda m: m["timestamp"], reverse=True)


def find_message(
    consumer: Any, topic: str, key: str, around_ms: int, window: int = 5000
) -> dict[str, Any] | None:
    """The message keyed ``key`` sent at about ``around_ms`` (epoch ms): at most ``window``
    messages of each partition are read from that time on, never the whole topic."""
    from kafka import TopicPartition

    parts = consumer.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    if not tps:
        return None
    ends = consumer.end_offsets(tps)
    found = consumer.offsets_for_times({tp: max(0, around_ms - 2000) for tp in tps})
    wanted = {
        tp: (at.offset, min(ends[tp], at.offset + window))
        for tp, at in found.items()
        if at is not None and at.offset < ends[tp]
    }
    matches = [m for m in _read(consumer, wanted) if m["key"] == key]
    return matches[0] if matches else None


def _read(consumer: Any, wanted: dict[Any, tuple[int, int]], timeout: float = 5) -> list[dict]:
    """The messages of each partition in [start, end) of ``wanted``, as `message` rows."""
    if not wanted:
        return []
    consumer.assign(list(wanted))
    for tp, (start, _) in wanted.items():
        consumer.seek(tp, start)
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    pending = {tp for tp, (start, end) in wanted.items() if start < end}
    while pending and time.monotonic() < deadline:
        for tp, batch in consumer.poll(timeout_ms=500).items():
            end = wanted[tp][1]
            out += [message(m) for m in batch if m.offset < end]
            if consumer.position(tp) >= end:
                pending.discard(tp)
    return out


def message(record: Any) -> dict[str, Any]:
    """A Kafka record as the page shows it: where it is, its key, schema id header, value."""
    headers = dict(record.headers or [])
    schema_id = headers.get(contract.SCHEMA_ID_HEADER)
    return {
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": record.key.decode("utf-8", "replace") if record.key is not None else None,
        "schema_id": schema_id.decode("ascii", "replace") if schema_id else None,
        "value": pretty(record.value),
        "size": len(record.value or b""),
    }


def pretty(value: bytes | None) -> str:
    """The value indented when it is JSON, else as text (undecodable bytes replaced)."""
    if value is None:
        return "(null)"
    text = value.decode("utf-8", "replace")
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def lag(ends: dict[int, int], committed: dict[int, int]) -> dict[int, int]:
    """Partition -> messages the stream job has not committed yet."""
    return {p: max(0, end - committed.get(p, 0)) for p, end in ends.items()}


def committed_offsets(settings: Settings) -> tuple[int | None, dict[int, int]]:
    """(last committed batch, offsets) from the stream job's checkpoint; (None, {}) without."""
    try:
        return checkpoint_offsets(settings.stream.checkpoint_dir, settings.kafka.topic)
    except (OSError, ValueError, IndexError):
        return None, {}


# --------------------------------------------------------------------------- the stream job

# The query's gauges (Dropwizard, `spark.sql.streaming.metricsEnabled`) on the Spark UI.
GAUGES = {
    "inputRate-total": "input_rows_per_s",
    "processingRate-total": "processed_rows_per_s",
    "latency": "batch_ms",
}


def spark_job(ui_url: str, http: requests.Session | None = None) -> dict[str, Any]:
    """Whether the stream job's Spark application answers, and its query's gauges."""
    get = (http or requests).get
    try:
        apps = get(f"{ui_url}/api/v1/applications", timeout=2).json()
    except (requests.RequestException, ValueError):
        return {"running": False}
    running = [a for a in apps if not a["attempts"][-1].get("completed")]
    if not running:
        return {"running": False}
    found: dict[str, Any] = {"running": True, "app": running[0]["name"]}
    try:
        gauges = get(f"{ui_url}/metrics/json/", timeout=2).json().get("gauges", {})
    except (requests.RequestException, ValueError):
        return found
    return {**found, **query_gauges(gauges)}


def query_gauges(gauges: dict[str, dict[str, Any]]) -> dict[str, float]:
    """The streaming query's input rate, processing rate and batch duration (ms), by name."""
    out: dict[str, float] = {}
    for key, gauge in gauges.items():
        if ".spark.streaming." not in key:
            continue
        name = key.rsplit(".", 1)[-1]
        if name in GAUGES and isinstance(gauge.get("value"), int | float):
            out[GAUGES[name]] = float(gauge["value"])
    return out


# --------------------------------------------------------------------------- Cassandra


def cassandra_nodes(session: Any) -> list[dict[str, Any]]:
    """Each node the driver knows: its address, data centre, and whether it is up."""
    hosts = sorted(session.cluster.metadata.all_hosts(), key=lambda h: str(h.endpoint))
    return [{"address": str(h.endpoint), "dc": h.datacenter, "up": bool(h.is_up)} for h in hosts]


def dead_letters(
    session: Any, keyspace: str, table: str, topic: str, partitions: list[int], latest: int = 5
) -> dict[str, Any]:
    """Dead letters of ``topic`` by reason and the ``latest`` newest; each partition is one
    Cassandra partition, read newest first and at most 10,000 rows of each."""
    meta = session.cluster.metadata.keyspaces.get(keyspace)
    if meta is None or table not in meta.tables:
        return {"total": 0, "reasons": [], "latest": []}
    reasons: Counter[str] = Counter()
    newest = []
    for p in partitions:
        rows = session.execute(
            f"SELECT partition, offset, reason, raw_value, schema_id, rejected_at FROM "
            f"{keyspace}.{table} WHERE topic = %s AND partition = %s ORDER BY offset DESC "
            "LIMIT 10000",
            (topic, p),
            timeout=20,
        )
        for i, row in enumerate(rows):
            reasons[row.reason] += 1
            if i < latest:
                newest.append(row)
    newest.sort(key=lambda r: r.rejected_at or 0, reverse=True)
    return {
        "total": sum(reasons.values()),
        "reasons": reasons.most_common(),
        "latest": [
            {
                "partition": r.partition,
                "offset": r.offset,
                "reason": r.reason,
                "schema_id": r.schema_id,
                "rejected_at": r.rejected_at.isoformat(" ", "seconds") if r.rejected_at else "",
                "raw_value": (r.raw_value or b"")[:500].decode("utf-8", "replace"),
            }
            for r in newest[:latest]
        ],
    }


def user_rows(session: Any, keyspace: str, table: str, ids: list[str]) -> dict[str, dict]:
    """The rows of these user ids, each with ``written_us`` (when Cassandra wrote it)."""
    if not ids:
        return {}
    marks = ", ".join(["%s"] * len(ids))
    fields = ", ".join(contract.FIELD_NAMES)
    rows = session.execute(
        f"SELECT {fields}, writetime(email) AS written_us FROM {keyspace}.{table} "
        f"WHERE {contract.PRIMARY_KEY} IN ({marks})",
        ids,
        timeout=10,
    )
    return {r.id: r._asdict() for r in rows}


def latencies_ms(rows: list[dict[str, Any]]) -> list[float]:
    """Produce -> Cassandra write, in ms, of rows that carry both times."""
    return [
        r["written_us"] / 1000 - r["produced_at"]
        for r in rows
        if r.get("written_us") and r.get("produced_at")
    ]


def percentiles(values: list[float], qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[float]:
    """Nearest-rank quantiles of ``values``."""
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] for q in qs]


# --------------------------------------------------------------------------- registry, Airflow


def schema_subject(url: str, subject: str) -> dict[str, Any]:
    """The subject's versions, compatibility mode and latest schema (pretty JSON)."""
    from pipeline import registry

    state = registry.Registry(url).state(subject)
    schema = ""
    if state.versions:
        reply = requests.get(f"{url.rstrip('/')}/subjects/{subject}/versions/latest", timeout=3)
        reply.raise_for_status()
        text = reply.json().get("schema", "")
        try:
            schema = json.dumps(json.loads(text), indent=2)
        except ValueError:
            schema = text
    return {
        "subject": subject,
        "versions": state.versions,
        "compatibility": state.compatibility or "registry default",
        "latest_id": state.latest_id,
        "schema": schema,
    }


def dag_runs(client: Any, dag_id: str, task_id: str, limit: int = 5) -> list[dict[str, Any]]:
    """The last ``limit`` runs of ``dag_id``: state, start, duration, and the task's counts."""
    runs = client.call(
        "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-start_date", "limit": limit}
    )["dag_runs"]
    out = []
    for run in runs:
        stats: dict[str, Any] = {}
        if run["state"] in ("success", "failed"):
            try:
                stats = client.xcom(dag_id, run["dag_run_id"], task_id) or {}
            except (AirflowError, requests.RequestException):
                stats = {}  # a run without counts (e.g. its task never ran) is still shown
        out.append(
            {
                "run_id": run["dag_run_id"],
                "state": run["state"],
                "start": (run.get("start_date") or "")[:19].replace("T", " "),
                "duration_s": _duration(run.get("start_date"), run.get("end_date")),
                "sent": stats.get("sent") if isinstance(stats, dict) else None,
                "skipped": stats.get("skipped") if isinstance(stats, dict) else None,
            }
        )
    return out


def _duration(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
