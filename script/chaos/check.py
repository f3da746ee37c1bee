"""The count at the end of a chaos run: every user Kafka acknowledged during it is one row,
field for field; nothing stored that was never sent; no dead letter; each DAG run's users."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pipeline import config, contract
from script.chaos.driver import Run
from script.pipeline_status import cassandra_session, token_slices


@dataclass
class Count:
    acknowledged: int = 0  # distinct users in the topic between the run's start and end offsets
    messages: int = 0  # messages in that range (a retried attempt sends its users again)
    rows: int = 0  # rows whose produce time falls in the run
    lost: int = 0  # acknowledged but not stored, or stored but not equal field for field
    extra: int = 0  # stored, produced during the run, never acknowledged
    dead_letters: int = 0  # dead letters of messages in the run's offsets
    run_users_missing: int = 0  # users a successful DAG run sent that are not rows

    @property
    def ok(self) -> bool:
        return not (self.lost or self.extra or self.dead_letters or self.run_users_missing)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def acknowledged(
    settings: config.Settings, start: dict[int, int], end: dict[int, int]
) -> tuple[dict[str, dict[str, Any]], int]:
    """The latest record of each id in the topic's offsets [start, end), and how many
    messages that range holds: what Kafka acknowledged while the run lasted."""
    from kafka import KafkaConsumer, TopicPartition

    topic = settings.kafka.topic
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    records: dict[str, dict[str, Any]] = {}
    messages = 0
    try:
        parts = {TopicPartition(topic, p): (start.get(p, 0), e) for p, e in end.items()}
        consumer.assign(list(parts))
        for tp, (first, _) in parts.items():
            consumer.seek(tp, first)
        while any(consumer.position(tp) < last for tp, (_, last) in parts.items()):
            for tp, batch in consumer.poll(timeout_ms=1000, max_records=50_000).items():
                for message in batch:
                    if message.offset >= parts[tp][1]:
                        continue
                    messages += 1
                    record = json.loads(message.value)
                    records[record["id"]] = record
    finally:
        consumer.close()
    return records, messages


def stored(settings: config.Settings, since_ms: int) -> dict[str, dict[str, Any]]:
    """Every row produced at ``since_ms`` or later, by id, one token range at a time."""
    from cassandra.concurrent import execute_concurrent_with_args

    c = settings.cassandra
    cluster, session = cassandra_session(c)
    try:
        query = session.prepare(
            f"SELECT {', '.join(contract.FIELD_NAMES)} FROM {c.keyspace}.{c.table} "
            "WHERE token(id) > ? AND token(id) <= ? AND produced_at >= ? ALLOW FILTERING"
        )
        query.fetch_size = 5000
        ranges = [(low, high, since_ms) for low, high in token_slices()]
        rows: dict[str, dict[str, Any]] = {}
        for ok, result in execute_concurrent_with_args(session, query, ranges, concurrency=4):
            if not ok:
                raise result
            rows.update((r.id, r._asdict()) for r in result)
        return rows
    finally:
        cluster.shutdown()


def dead_letters(settings: config.Settings, start: dict[int, int]) -> int:
    """Dead letters of the topic's messages from ``start`` on (their key: topic, partition)."""
    c = settings.cassandra
    cluster, session = cassandra_session(c)
    try:
        query = (
            f"SELECT COUNT(*) FROM {c.keyspace}.{c.dead_letter_table} "
            "WHERE topic = %s AND partition = %s AND offset >= %s"
        )
        topic = settings.kafka.topic
        return sum(session.execute(query, (topic, p, o)).one()[0] for p, o in start.items())
    finally:
        cluster.shutdown()


def run_users(run: Run, per_page: int) -> set[str]:
    """The ids of the users a DAG run was asked for: the stand-in's, from the run's seed."""
    from pipeline.randomuser import seed_for_run
    from standin import generate_users

    total, seed = int(run.conf["total"]), seed_for_run(run.run_id)
    pages = range(1, -(-total // per_page) + 1)
    ids = [u["login"]["uuid"] for p in pages for u in generate_users(seed, p, per_page)]
    return set(ids[:total])


def count(
    settings: config.Settings, start: dict[int, int], end: dict[int, int], runs: list[Run]
) -> Count:
    records, messages = acknowledged(settings, start, end)
    out = Count(acknowledged=len(records), messages=messages)
    if records:
        times = [int(r["produced_at"]) for r in records.values()]
        rows = stored(settings, min(times))
        last = max(times)
        out.rows = sum(1 for r in rows.values() if r["produced_at"] <= last)
        out.lost = sum(1 for i, record in records.items() if rows.get(i) != record)
        out.extra = sum(1 for i, r in rows.items() if i not in records and r["produced_at"] <= last)
    out.dead_letters = dead_letters(settings, start)
    per_page = settings.api.per_request
    for run in runs:
        if run.state == "success":
            out.run_users_missing += len(run_users(run, per_page) - records.keys())
    return out
