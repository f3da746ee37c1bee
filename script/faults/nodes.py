"""The cluster topology's fault scenarios: one node of each kind SIGKILLed mid-stream at 1,000
users/s (a Cassandra node, then the seed; the broker leading the topic's first partition; a
Spark worker with its executors), brought back after a while, and every user counted.

Each returns an ``Outcome`` whose note says how the node rejoined and caught up (Cassandra's
hints delivered, Kafka's replicas back in sync, the worker's executor back) and the stream's
latency before, during and after.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline import config
from script import stack
from script.faults.rig import Feeder, Outcome, SupervisedJob, say, tally
from script.faults.scenarios import Durations
from script.layout import StackError
from script.procs import process_tree
from script.services import STACK, Service, named
from script.services.cassandra import Cassandra
from script.services.kafka import Kafka
from script.services.spark import SparkWorker, master_state

RATE = 1000  # users per second offered while a node dies


def require_cluster() -> None:
    """The node scenarios need more than one node of each: say how to get them."""
    nodes = [s for s in STACK if isinstance(s, Cassandra | Kafka | SparkWorker)]
    kinds = {type(s) for s in nodes}
    counts = {k: sum(isinstance(s, k) for s in nodes) for k in (Cassandra, Kafka, SparkWorker)}
    if len(kinds) < 3 or min(counts.values()) < 2:
        raise StackError(
            "the node scenarios need the cluster topology (3 Cassandra nodes, 3 brokers, 2 Spark "
            "workers): `./run.sh down && ./run.sh clean && STACK_TOPOLOGY=cluster ./run.sh up`"
        )


def sigkill(service: Service) -> int:
    """SIGKILL ``service``'s whole process tree, as a machine dying would: no shutdown."""
    pid = service.pid()
    if pid is None:
        raise StackError(f"{service.name} is not running: nothing to kill")
    tree = process_tree(pid)
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30
    while service.pid() is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(tree)


def latencies(job: SupervisedJob) -> list[tuple[float, float]]:
    """(produced at, seconds from produced to written) of every row, in produced order."""
    from cassandra.query import SimpleStatement

    table = f"{job.keyspace}.{job.settings.cassandra.table}"
    query = SimpleStatement(
        f"SELECT produced_at, writetime(email) AS written_us FROM {table}", fetch_size=5000
    )
    rows = job.session().execute(query, timeout=120)
    return sorted((r.produced_at / 1000, r.written_us / 1e6 - r.produced_at / 1000) for r in rows)


def latency_note(job: SupervisedJob, killed: float, back: float) -> str:
    """Median latency of the users produced before the kill, while the node was down, and in
    the last 10 s of the run ("latency recovers")."""
    rows = latencies(job)
    if not rows:
        return "no rows; "
    end = rows[-1][0]
    windows = {
        "before": [lat for t, lat in rows if killed - 10 <= t < killed],
        "node down": [lat for t, lat in rows if killed <= t < back],
        "last 10 s": [lat for t, lat in rows if t >= end - 10],
    }
    shown = ", ".join(
        f"{name} {statistics.median(values):.2f} s (p95 "
        f"{statistics.quantiles(values, n=20)[-1]:.2f} s)"
        for name, values in windows.items()
        if len(values) >= 2
    )
    return f"latency median {shown}; "


def _run(
    title: str,
    node: Callable[[SupervisedJob], Service],
    rejoined: Callable[[SupervisedJob, Service], str],
    d: Durations,
) -> Outcome:
    """Feed at RATE; SIGKILL ``node(job)`` mid-stream; the next row written (nobody acts);
    ``d.node_down`` seconds later start the node again; ``rejoined`` waits until it caught up
    and says how; feed ``d.between_kills`` more seconds; drain and count."""
    outcome = Outcome(title)
    with SupervisedJob(title.split()[0].lower(), d.job_env) as job:
        job.start()
        with Feeder(job.settings, RATE) as feeder:
            job.next_batch(120)
            time.sleep(d.between_kills)
            victim = node(job)
            processes = sigkill(victim)
            killed = time.time()
            outcome.tried = 1
            say(f"  SIGKILLed {victim.name} ({processes} processes)")
            outcome.recover_s = job.next_batch(300)  # rows go on being written, nobody acts
            time.sleep(max(0.0, d.node_down - outcome.recover_s))
            if isinstance(victim, Cassandra):
                held = pending_hints(victim)
                outcome.note += f"the others held {held} hint file(s) for it while down; "
            stack.start_service(victim)
            back = time.time()
            outcome.note += f"{victim.name} back after {back - killed:.0f} s: "
            outcome.note += rejoined(job, victim)
            time.sleep(d.between_kills)
        feeder.stop()
        if feeder.failed:
            outcome.note += f"{feeder.failed} sends refused by Kafka (not counted as sent); "
        job.wait_drained(300)
        tally(outcome, job, feeder.acked)
        outcome.note += latency_note(job, killed, back)
        outcome.note += f"job restarts {job.restarts()}; "
        return outcome


# --- Cassandra -------------------------------------------------------------------------------


def pending_hints(node: Service) -> int:
    """Hint files the other live nodes still hold for ``node``."""
    others = [s for s in STACK if isinstance(s, Cassandra) and s.name != node.name]
    return sum((other.hints_held() or {}).get(node.host, 0) for other in others)


def _hints_delivered(job: SupervisedJob, node: Service) -> str:
    waited = job.wait_for(lambda: pending_hints(node) == 0, "hints delivered", 300)
    return f"rejoined, every hint for it delivered {waited:.0f} s later; "


# --- Kafka -----------------------------------------------------------------------------------


def _partitions(job: SupervisedJob) -> list[dict[str, Any]]:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=job.settings.kafka.bootstrap_servers)
    try:
        (topic,) = admin.describe_topics([job.topic])
    finally:
        admin.close()
    return topic.get("partitions") or []


def _leader(job: SupervisedJob) -> Service:
    """The broker that leads the job's topic's first partition (and perhaps more)."""
    leader = next(p["leader_id"] for p in _partitions(job) if p["partition_index"] == 0)
    return next(s for s in STACK if isinstance(s, Kafka) and s.broker - 1 == leader)


def _replicas_in_sync(job: SupervisedJob, node: Service) -> str:
    def in_sync() -> bool:
        try:
            return all(len(p["isr_nodes"]) == len(p["replica_nodes"]) for p in _partitions(job))
        except Exception:  # noqa: BLE001 - a broker still electing: ask again
            return False

    waited = job.wait_for(in_sync, "every replica back in sync", 300)
    return f"rejoined, every partition's replicas in sync again {waited:.0f} s later; "


# --- Spark -----------------------------------------------------------------------------------


def _worker_back(job: SupervisedJob, node: Service) -> str:
    """The master counts every worker alive again, and the job has all its cores (the one it
    lost is given to it again, on whichever worker has a free one)."""
    workers = config.load().stack.spark_workers
    cores = job.settings.stream.batch_partitions

    def back() -> bool:
        state = master_state() or {}
        alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
        apps = state.get("activeapps", [])
        return len(alive) == workers and bool(apps) and all(a["cores"] >= cores for a in apps)

    waited = job.wait_for(back, "every worker alive and the job's cores back", 300)
    return (
        f"rejoined: {workers} of {workers} workers alive and the job's {cores} cores back "
        f"{waited:.0f} s later; "
    )


@dataclass(frozen=True)
class NodeFault:
    """A scenario: which node dies, and what says it is back and has caught up."""

    title: str
    victim: Callable[[SupervisedJob], Service]
    rejoined: Callable[[SupervisedJob, Service], str]

    def __call__(self, d: Durations) -> Outcome:
        return _run(self.title, self.victim, self.rejoined, d)


NODE_SCENARIOS: dict[str, Callable[[Durations], Outcome]] = {
    "cassandra-node": NodeFault(
        "Cassandra node (not the seed) SIGKILLed mid-stream",
        lambda job: named("cassandra-2"),
        _hints_delivered,
    ),
    "cassandra-seed": NodeFault(
        "Cassandra seed node SIGKILLed mid-stream", lambda job: named("cassandra"), _hints_delivered
    ),
    "kafka-broker": NodeFault(
        "Kafka broker (a partition leader) SIGKILLed mid-stream", _leader, _replicas_in_sync
    ),
    "spark-worker": NodeFault(
        "Spark worker (and its executors) SIGKILLed mid-stream",
        lambda job: named("spark-worker-1"),
        _worker_back,
    ),
}
