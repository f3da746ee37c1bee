"""Where the data is: Kafka end offsets, the stream job's checkpoint, rows in Cassandra, the DAG.

Used by `./run.sh status` (the pipeline half of the table) and by the end-to-end runner to know
when the stream job has caught up with what the DAG sent.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import CassandraSettings, Settings


@dataclass
class StreamProgress:
    end_offsets: dict[int, int]  # partition -> next offset to be written (messages so far)
    committed: dict[int, int]  # partition -> next offset the stream job will read
    batch: int | None  # last committed micro-batch id

    @property
    def messages(self) -> int:
        return sum(self.end_offsets.values())

    @property
    def lag(self) -> int:
        return sum(max(0, end - self.committed.get(p, 0)) for p, end in self.end_offsets.items())


def topic_end_offsets(settings: Settings) -> dict[int, int]:
    """Next offset per partition of the topic; {} when the topic does not exist yet."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap_servers, request_timeout_ms=10000
    )
    try:
        partitions = consumer.partitions_for_topic(settings.kafka.topic) or set()
        tps = [TopicPartition(settings.kafka.topic, p) for p in sorted(partitions)]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()} if tps else {}
    finally:
        consumer.close()


def checkpoint_batches(checkpoint_dir: str, log: str) -> set[int]:
    """The batch ids in one of a checkpoint's logs: ``offsets`` (planned) or ``commits``
    (written, then committed); none while the folder does not exist."""
    return {int(path.name) for path in Path(checkpoint_dir, log).glob("[0-9]*")}


def checkpoint_offsets(checkpoint_dir: str, topic: str) -> tuple[int | None, dict[int, int]]:
    """(batch id, offsets) of the last micro-batch the stream job committed, from its checkpoint.

    Structured Streaming writes ``offsets/<batch>`` when a batch is planned and
    ``commits/<batch>`` when its sink finished: only committed batches count as read.
    """
    root = Path(checkpoint_dir)
    commits = checkpoint_batches(checkpoint_dir, "commits")
    if not commits:
        return None, {}
    batch = max(commits)
    lines = (root / "offsets" / str(batch)).read_text().splitlines()
    offsets = json.loads(lines[-1]).get(topic, {})
    return batch, {int(p): int(o) for p, o in offsets.items()}


def stream_progress(settings: Settings) -> StreamProgress:
    batch, committed = checkpoint_offsets(settings.stream.checkpoint_dir, settings.kafka.topic)
    return StreamProgress(topic_end_offsets(settings), committed, batch)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cassandra_session(c: CassandraSettings):
    """A session that reads at LOCAL_QUORUM: a count agrees with the job's quorum writes even
    while a replica is down or catching up.

    It looks for a node that went away every second: the driver's default backs off to
    minutes, so a reader (the faults' rig, the page) would see a restarted node tens of
    seconds after it answers and count the pipeline's recovery late by as much."""
    from cassandra import ConsistencyLevel
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import ConstantReconnectionPolicy

    quorum = ExecutionProfile(consistency_level=ConsistencyLevel.LOCAL_QUORUM)
    cluster = Cluster(
        c.hosts,
        port=c.port,
        protocol_version=5,
        connect_timeout=5,
        auth_provider=PlainTextAuthProvider(c.username, c.password),
        execution_profiles={EXEC_PROFILE_DEFAULT: quorum},
        reconnection_policy=ConstantReconnectionPolicy(1.0),
    )
    return cluster, cluster.connect()


# Murmur3Partitioner's tokens, split into this many ranges for a count.
TOKEN_MIN, TOKEN_MAX = -(2**63), 2**63 - 1
COUNT_SLICES = 64


def token_slices(slices: int = COUNT_SLICES) -> list[tuple[int, int]]:
    """``slices`` adjacent (low, high] token ranges that cover the ring once (Murmur3 gives no
    key the token TOKEN_MIN: it maps it to TOKEN_MAX)."""
    step = (TOKEN_MAX - TOKEN_MIN) // slices
    bounds = [TOKEN_MIN + i * step for i in range(slices)] + [TOKEN_MAX]
    return list(zip(bounds, bounds[1:], strict=False))


def _slice_count(session, keyspace: str, table: str):
    """The prepared count of one token range (low, high] of a table, or None when the table
    does not exist yet."""
    meta = session.cluster.metadata.keyspaces.get(keyspace)
    if meta is None or table not in meta.tables:
        return None
    key = ", ".join(c.name for c in meta.tables[table].partition_key)
    return session.prepare(
        f"SELECT COUNT(*) FROM {keyspace}.{table} WHERE token({key}) > ? AND token({key}) <= ?"
    )


def count_slice(session, keyspace: str, table: str, low: int, high: int) -> int:
    """Rows of a table whose partition token is in (low, high]: a bounded share of it."""
    query = _slice_count(session, keyspace, table)
    return session.execute(query, (low, high), timeout=60).one()[0] if query else 0


def count_rows(session, keyspace: str, table: str) -> int | None:
    """The rows of a table, or None when it does not exist yet.

    Counted one token range at a time (a few at once): a single COUNT(*) reads the whole table
    in one request and times out in Cassandra on a large one."""
    from cassandra.concurrent import execute_concurrent_with_args

    query = _slice_count(session, keyspace, table)
    if query is None:
        return None
    results = execute_concurrent_with_args(session, query, token_slices(), concurrency=4)
    total = 0
    for ok, result in results:
        if not ok:
            raise result
        total += result.one()[0]
    return total


def reasons(session, keyspace: str, table: str, limit: int = 100_000) -> Counter[str]:
    """Dead letters by reason (CQL groups only by key columns, so the grouping is done here),
    over at most ``limit`` rows; empty when the table does not exist yet."""
    from cassandra.query import SimpleStatement

    if count_rows(session, keyspace, table) is None:
        return Counter()
    query = SimpleStatement(f"SELECT reason FROM {keyspace}.{table} LIMIT {limit}", fetch_size=5000)
    return Counter(row.reason for row in session.execute(query, timeout=120))
