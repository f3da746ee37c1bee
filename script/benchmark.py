"""`./run.sh bench`: how fast the pipeline is and how much memory it takes, as printed figures.

Each figure is the median of several runs on the local stack; the ratios compare two ways
measured in the same invocation, so a noisy shared machine affects both sides alike.

1. Fetching: users/s with one request per user (the reference implementation's way) against
   batched requests of 5,000 (``results=``), both from the bundled stand-in.
2. Producing: users/s of a whole producer run (fetch, format, validate, send, flush).
3. End to end: a producer run into a fresh topic read by a fresh stream job into a fresh
   keyspace: users/s from the first send to the last row in Cassandra, and latency
   (median and p95, produce time to Cassandra's write time).
4. Memory: PSS and RSS of each running service (`./run.sh status`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time

from pipeline import config, producer
from pipeline.randomuser import RandomUserClient
from script import services, stack
from script.layout import DATA, LOGS
from script.pipeline_status import cassandra_session, checkpoint_offsets, percentile

WARM_UP = 2000  # users sent through a fresh stream job before its clock starts


def drop_topic(settings: config.Settings, topic: str) -> None:
    """Delete a topic the benchmark made, so runs leave nothing behind."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap_servers)
    try:
        admin.delete_topics([topic])
    finally:
        admin.close()


def median_of(label: str, runs: list[float], unit: str) -> float:
    value = statistics.median(runs)
    shown = ", ".join(f"{r:,.0f}" for r in runs)
    print(f"  {label:<44}{value:>12,.0f} {unit}  (median of {len(runs)}: {shown})", flush=True)
    return value


def fetch_rates(url: str, users: int, runs: int) -> tuple[float, float]:
    api = config.load({**os.environ, "USERS_API_URL": url}).api
    client = RandomUserClient(api)
    single, batched = [], []
    for run in range(runs):
        started = time.perf_counter()
        for page in range(1, users + 1):
            client.fetch(1, f"bench-single-{run}", page)
        single.append(users / (time.perf_counter() - started))
        started = time.perf_counter()
        client.fetch(min(users * 10, 5000), f"bench-batch-{run}", 1)
        batched.append(min(users * 10, 5000) / (time.perf_counter() - started))
    return (
        median_of("fetch, one request per user", single, "users/s"),
        median_of("fetch, 5,000 users per request", batched, "users/s"),
    )


def producer_rates(url: str, users: int, runs: int) -> float:
    rates = []
    for run in range(runs):
        topic = f"bench-producer-{os.urandom(3).hex()}"
        settings = config.load(
            {
                **os.environ,
                "USERS_API_URL": url,
                "USERS_TOTAL": str(users),
                "USERS_SEED": f"bench-{run}",
                "KAFKA_TOPIC": topic,
            }
        )
        stats = producer.run(settings)
        rates.append(stats.rate)
        drop_topic(settings, topic)
    return median_of(f"producer run of {users:,} users", rates, "users/s")


def end_to_end(url: str, users: int) -> tuple[float, float, float]:
    """(users/s from first send to last row, median latency s, p95 latency s) of one run."""
    suffix = os.urandom(3).hex()
    topic, keyspace = f"bench-e2e-{suffix}", f"bench_{suffix}"
    checkpoint = DATA / "bench" / suffix
    env = {
        "KAFKA_TOPIC": topic,
        "CASSANDRA_KEYSPACE": keyspace,
        "SPARK_CHECKPOINT_DIR": str(checkpoint),
        "SPARK_UI_PORT": "4071",
    }
    log = LOGS / f"bench-stream-{suffix}.log"
    settings = config.load(
        {
            **os.environ,
            "USERS_API_URL": url,
            "USERS_TOTAL": str(users),
            "USERS_SEED": f"bench-e2e-{suffix}",
            "KAFKA_TOPIC": topic,
        }
    )
    producer.ensure_topic(settings.kafka)
    job = services.spawn_stream_job(env, log)
    c = settings.cassandra
    cluster, session = cassandra_session(c)

    def wait_read(count: int, since: float) -> None:
        while sum(checkpoint_offsets(str(checkpoint), topic)[1].values()) < count:
            if job.poll() is not None or time.monotonic() - since > 900:
                raise stack.StackError(f"bench stream job fell over or stalled: see {log}")
            time.sleep(0.2)

    try:
        # Warm up: the job's first batch pays for JVM warm-up and connector sessions; the
        # figures are for a running job, as in the pipeline.
        warm = config.load(
            {
                **os.environ,
                "USERS_API_URL": url,
                "USERS_TOTAL": str(WARM_UP),
                "USERS_SEED": f"warm-{suffix}",
                "KAFKA_TOPIC": topic,
            }
        )
        producer.run(warm)
        wait_read(WARM_UP, time.monotonic())
        started = time.monotonic()
        producer.run(settings)
        wait_read(WARM_UP + users, started)
        elapsed = time.monotonic() - started
        rows = list(
            session.execute(
                f"SELECT produced_at, writetime(email) AS w FROM {keyspace}.{c.table} "
                f"WHERE produced_at >= %s ALLOW FILTERING",
                (int((time.time() - elapsed - 1) * 1000),),
                timeout=120,
            )
        )
        latencies = sorted(r.w / 1000 - r.produced_at for r in rows)
        if len(rows) != users:
            raise stack.StackError(f"{len(rows)} rows for {users} users sent")
    finally:
        stack.stop_tree("bench stream job", job.pid, timeout=60)
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
        cluster.shutdown()
        drop_topic(settings, topic)
        shutil.rmtree(checkpoint, ignore_errors=True)  # scratch data of this measurement
    p95 = percentile(latencies, 0.95)
    return users / elapsed, statistics.median(latencies) / 1000, p95 / 1000


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="./run.sh bench", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=50_000, help="users per producer run")
    parser.add_argument("--e2e-users", type=int, default=100_000)
    parser.add_argument("--parts", default="fetch,producer,e2e", help="which figures to measure")
    args = parser.parse_args(argv)
    stack.up(["zookeeper", "kafka", "cassandra"])
    # The stand-in runs in a process of its own, as the real API is remote.
    stack.start_service(services.STANDIN)
    url = services.standin_url()
    print("Benchmark (local stack, bundled randomuser stand-in)")
    parts = set(args.parts.split(","))
    if "fetch" in parts:
        single, batched = fetch_rates(url, 200, args.runs)
        print(f"  {'batched / one-per-user fetch ratio':<44}{batched / single:>12,.1f} x")
    if "producer" in parts:
        producer_rates(url, args.users, args.runs)
    if "e2e" in parts:
        rates, medians, p95s = [], [], []
        for _ in range(args.runs):
            rate, median, p95 = end_to_end(url, args.e2e_users)
            rates.append(rate)
            medians.append(median)
            p95s.append(p95)
        median_of(f"end to end, {args.e2e_users:,} users to Cassandra", rates, "users/s")
        print(f"  {'end-to-end latency median':<44}{statistics.median(medians):>12,.2f} s")
        print(f"  {'end-to-end latency p95':<44}{statistics.median(p95s):>12,.2f} s")
    print()
    stack.status()
    return 0
