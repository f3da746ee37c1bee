"""The fault scenarios: each offers users, breaks one thing, and returns its counted ``Outcome``.

Every scenario takes ``short``: the suite's version (seconds instead of minutes, the same
faults). Durations are the issue's: Cassandra down 30 s, a 10-minute soak at 2,000 users/s.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline import config, contract, producer
from script.faults.rig import Feeder, Outcome, SupervisedJob, restart, say, tally, users
from script.harness.side import QUICK_WARM_UP_MESSAGES, warm_up_env
from script.procs import memory_kb
from script.services import named

RATE = 1000  # users per second offered while a fault happens


@dataclass(frozen=True)
class Durations:
    cassandra_down: float  # seconds Cassandra is stopped
    between_kills: float  # seconds of load between two SIGKILLs of the job
    users: int  # users of a producer run (Kafka restart, API faults)
    soak: float  # seconds of the soak
    soak_rate: float  # users per second offered during the soak
    sample_every: float  # seconds between two memory samples
    node_down: float  # seconds a SIGKILLed node stays down (the cluster topology's scenarios)
    # Synthetic users each start of a scenario's job streams before its first batch
    # (SPARK_WARM_UP_MESSAGES); None: the job's own setting, as the user's job has it.
    warm_up: int | None = None

    @property
    def job_env(self) -> dict[str, str]:
        """The settings a scenario's job gets on top of the stack's."""
        return {} if self.warm_up is None else warm_up_env(self.warm_up)


FULL = Durations(30, 8, 30_000, 600, 2000, 10, 30)
# The suite's: the same faults in seconds, and jobs that warm up briefly (QUICK_WARM_UP_MESSAGES:
# the warm-up serves the first batches' latency, which no fault scenario measures).
SHORT = Durations(10, 4, 15_000, 40, 2000, 5, 10, QUICK_WARM_UP_MESSAGES)


def _feed_until_recovered(job: SupervisedJob, feeder: Feeder, outcome: Outcome) -> Outcome:
    """Stop the feeder, wait until the job has read everything, count."""
    feeder.stop()
    if feeder.failed:
        outcome.note += f"{feeder.failed} sends refused by Kafka (not counted as sent); "
    job.wait_drained(300)
    return tally(outcome, job, feeder.acked)


def stream_job_killed(d: Durations) -> Outcome:
    """SIGKILL the stream job at three moments of one run: while it writes, while its
    supervisor's restart warms up, and right after it committed a batch."""
    outcome = Outcome("stream job SIGKILLed x3 (supervisor restarts it)")
    with SupervisedJob("kill", d.job_env) as job:
        job.start()
        with Feeder(job.settings, RATE) as feeder:
            job.next_batch(120)
            time.sleep(d.between_kills)
            job.kill_job()  # 1: mid-stream, batches in flight
            outcome.tried += 1
            job.wait_for(lambda: job.restarts() >= 1 and job.job_pid() is not None, "restart", 60)
            time.sleep(2)
            job.kill_job()  # 2: the restarted job warming up, before its query runs
            outcome.tried += 1
            job.wait_for(lambda: job.restarts() >= 2 and job.job_pid() is not None, "restart", 60)
            job.next_batch(300)
            before = job.batches("commits")
            job.wait_for(lambda: bool(job.batches("commits") - before), "a commit", 120)
            job.kill_job()  # 3: just after a commit, the next batch starting
            outcome.tried += 1
            killed = time.monotonic()
            job.wait_for(lambda: job.restarts() >= 3, "restart", 60)
            job.next_batch(300)
            outcome.recover_s = time.monotonic() - killed
            time.sleep(d.between_kills)
        outcome.note += f"restarts {job.restarts()}; "
        return _feed_until_recovered(job, feeder, outcome)


def cassandra_down(d: Durations) -> Outcome:
    outcome = Outcome(f"Cassandra down {d.cassandra_down:.0f} s mid-run")
    with SupervisedJob("cassandra", d.job_env) as job:
        job.start()
        with Feeder(job.settings, RATE) as feeder:
            job.next_batch(120)
            answered = restart(named("cassandra"), d.cassandra_down)
            backlog = job.end_offsets()  # what was sent until Cassandra answered
            outcome.tried = 1
            job.next_batch(300)
            outcome.recover_s = time.monotonic() - answered
            job.wait_for(lambda: job.behind(backlog) == 0, "the backlog written", 300)
            caught_up = time.monotonic() - answered
            time.sleep(d.between_kills)
        outcome.note += (
            f"every user sent until Cassandra answered was written {caught_up:.1f} s after it "
            f"answered; job restarts {job.restarts()}; "
        )
        return _feed_until_recovered(job, feeder, outcome)


def kafka_restarted(d: Durations) -> Outcome:
    """The broker restarted while the real producer sends from the stand-in: every user it
    reports sent is in Cassandra, or the run fails naming its counts (never under-counts)."""
    from standin import StandIn

    outcome = Outcome("Kafka broker restarted mid-run (producer side)")
    with SupervisedJob("kafka", d.job_env) as job, StandIn() as api:
        job.start()
        env = {
            **job.env,
            "USERS_API_URL": api.url,
            "USERS_TOTAL": str(d.users),
            "USERS_PER_SECOND": str(RATE),
            "USERS_SEED": job.name,
        }
        result: dict[str, Any] = {}
        run = threading.Thread(target=_produce, args=(config.load(env), result), daemon=True)
        run.start()
        job.next_batch(120)
        time.sleep(d.users / RATE / 4)
        planned = job.batches("offsets")
        answered = restart(named("kafka"), 0)
        outcome.tried = 1
        # The next batch written; if the producer had sent everything before the broker went,
        # the job catching up with the topic instead.
        job.wait_for(
            lambda: (
                bool(job.batches("commits") - planned) or (not run.is_alive() and job.lag() == 0)
            ),
            "rows after the restart",
            300,
        )
        outcome.recover_s = time.monotonic() - answered
        run.join(timeout=d.users / RATE * 3 + 300)
        job.wait_drained(300)
        in_kafka = topic_records(job)
        tally(outcome, job, in_kafka)
        if "stats" in result:
            reported = result["stats"].sent
            outcome.note += f"producer: {reported:,} sent; "
            outcome.lost += max(0, reported - len(in_kafka))  # reported but not there
        else:
            outcome.note += f"producer failed loudly: {str(result.get('error'))[:120]}; "
        return outcome


def _produce(settings: config.Settings, result: dict[str, Any]) -> None:
    try:
        result["stats"] = producer.run(settings)
    except Exception as exc:  # noqa: BLE001 - the outcome reports it
        result["error"] = exc


def topic_records(job: SupervisedJob) -> dict[str, dict[str, Any]]:
    """The latest record of each id in the job's topic (what Cassandra should hold)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=job.settings.kafka.bootstrap_servers, enable_auto_commit=False
    )
    try:
        parts = [TopicPartition(job.topic, p) for p in consumer.partitions_for_topic(job.topic)]
        ends = consumer.end_offsets(parts)
        consumer.assign(parts)
        consumer.seek_to_beginning()
        out: dict[str, dict[str, Any]] = {}
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            for batch in consumer.poll(timeout_ms=1000).values():
                for message in batch:
                    record = json.loads(message.value)
                    out[record["id"]] = record
        return out
    finally:
        consumer.close()


# API faults, one per request, then odd entries: each user ends as a row or a counted skip.
API_FAULTS: list[dict[str, Any]] = [
    {"status": 500},
    {},
    {"status": 429, "retry_after": "1"},
    {},
    {"delay": 3},  # past the read timeout the scenario sets (1 s)
    {},
    {"truncate": 0.5},
    {},
    {"error_body": True},
    {
        "edits": [
            {"user": 0, "replace": None},
            {"user": 1, "replace": "a string"},
            {"user": 2, "replace": 7},
            {"user": 3, "surrogate": "name.first"},
            {"user": 4, "drop": "email"},
            {"user": 5, "set": "name.last", "value": 5},
            {"user": 6, "set": "location.city", "value": {"a": 1}},
        ]
    },
]


def api_faults(d: Durations) -> Outcome:
    """The real producer against the stand-in serving 500, 429 + Retry-After, a hang past the
    timeout, a truncated body, a 200 error body, then null/string/number entries, a lone
    surrogate, a missing field and changed types: every user a row or a counted skip."""
    from standin import StandIn

    outcome = Outcome("API faults + odd users (real producer)")
    with SupervisedJob("api", d.job_env) as job, StandIn() as api:
        job.start()
        api.add_faults(*API_FAULTS)
        outcome.tried = len([f for f in API_FAULTS if f])
        env = {
            **job.env,
            "USERS_API_URL": api.url,
            "USERS_TOTAL": "1000",
            "USERS_PER_REQUEST": "200",
            "USERS_PER_SECOND": "0",
            "USERS_SEED": job.name,
            "USERS_API_READ_TIMEOUT": "1",
            "USERS_API_BACKOFF_SECONDS": "0.1",
        }
        stats = producer.run(config.load(env))
        job.wait_drained(300)
        tally(outcome, job, topic_records(job))
        outcome.sent = stats.sent
        unaccounted = stats.fetched - stats.sent - stats.skipped
        outcome.lost += abs(unaccounted) + abs(stats.sent - outcome.rows)
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(stats.skip_reasons.items()))
        outcome.note += f"fetched {stats.fetched:,}, skipped {stats.skipped} ({reasons}); "
        return outcome


def airflow_retry(d: Durations) -> Outcome:
    """The DAG's task fails half-way (the API gives up on page 2) and Airflow retries it: the
    retry fetches the same users (the seed comes from the run id), so the run ends with
    exactly the users it was asked for, the ones sent twice upserted, not extra."""
    from pipeline.randomuser import seed_for_run
    from script.airflow_api import AirflowClient
    from script.services.airflow import airflow_admin, url
    from standin import StandIn, generate_users

    outcome = Outcome("Airflow task fails half-way, retried by Airflow")
    airflow = AirflowClient(url(), *airflow_admin())
    total, per_page = 10_000, config.load().api.per_request
    with SupervisedJob("retry", d.job_env) as job, StandIn() as api:
        job.start()
        retries = config.load().api.max_retries
        api.add_faults({}, {"status": 503, "retry_after": "0", "count": retries + 1})
        conf = {"api_url": api.url, "total": total, "users_per_second": 0, "topic": job.topic}
        airflow.wait_for_dag(config.DAG_ID)
        airflow.unpause(config.DAG_ID)
        run_id = airflow.trigger(config.DAG_ID, conf)
        started = time.monotonic()
        state = airflow.wait_for_run(config.DAG_ID, run_id, progress=0)
        task = airflow.call(
            "GET", f"/dags/{config.DAG_ID}/dagRuns/{run_id}/taskInstances/stream_users"
        )
        outcome.tried = task["try_number"] - 1  # the failed attempts Airflow retried
        outcome.recover_s = time.monotonic() - started
        job.wait_drained(300)
        in_kafka = topic_records(job)
        tally(outcome, job, in_kafka)
        seed = seed_for_run(run_id)
        pages = range(1, -(-total // per_page) + 1)
        served = {u["login"]["uuid"] for p in pages for u in generate_users(seed, p, per_page)}
        outcome.lost += len(served - in_kafka.keys())  # total is whole pages: all were asked
        outcome.extra += len(in_kafka.keys() - served)
        outcome.note += f"run {state} after {task['try_number']} attempts; "
        if state != "success":
            outcome.lost += 1
        return outcome


# Messages written straight to the topic: (what, key, value); all but the last are dead letters.
BAD_MESSAGES: list[tuple[str, bytes | None, bytes | None]] = [
    ("not UTF-8", b"k", b"\xff\xfe{}"),
    ("not JSON", b"k", b"{not json"),
    ("an array", b"k", b"[1, 2]"),
    ("empty", b"k", b""),
    ("no value", b"k", None),
    ("1 MB", b"k", b'{"id": "' + b"x" * 1_000_000 + b'"}'),
    ("missing id", b"k", None),  # filled in from a valid user below
    ("wrong type", b"k", None),
    ("extra field", b"k", None),
    ("oversize id", b"k", None),
]


def _bad_values(sample: dict[str, Any]) -> list[tuple[str, bytes | None]]:
    def enc(record: dict[str, Any]) -> bytes:
        return json.dumps(record, ensure_ascii=False).encode()

    filled = {
        "missing id": enc({k: v for k, v in sample.items() if k != "id"}),
        "wrong type": enc({**sample, "produced_at": "yesterday"}),
        "extra field": enc({**sample, "is_admin": True}),
        "oversize id": enc({**sample, "id": "x" * (contract.MAX_STRING_BYTES + 1)}),
    }
    return [(what, filled.get(what, value)) for what, _, value in BAD_MESSAGES]


def bad_messages(d: Durations) -> Outcome:
    """Bad messages between good ones: each bad one a dead letter with its reason, a duplicate
    id a correct upsert (the later record wins), and the stream never stops."""
    from kafka import KafkaProducer

    outcome = Outcome("bad messages on the topic (10 kinds) + a duplicate id")
    with SupervisedJob("bad", d.job_env) as job:
        job.start()
        good = list(users(200))
        expected = {}
        sender = KafkaProducer(
            bootstrap_servers=job.settings.kafka.bootstrap_servers, max_request_size=2_000_000
        )
        now = int(time.time() * 1000)
        bad = _bad_values({**good[0], "produced_at": now})
        for n, record in enumerate(good):
            record = {**record, "produced_at": now}
            sender.send(job.topic, key=record["id"].encode(), value=producer.encode_value(record))
            expected[record["id"]] = record
            if n < len(bad):
                what, value = bad[n]
                sender.send(job.topic, key=b"bad", value=value)
                outcome.tried += 1
        sender.flush()
        job.wait_drained(300)
        # A duplicate id in a later batch: the newer record replaces the row.
        again = {**good[5], "produced_at": now + 1, "email": "changed@example.com"}
        sender.send(job.topic, key=again["id"].encode(), value=producer.encode_value(again))
        expected[again["id"]] = again
        sender.flush()
        sender.close()
        job.wait_drained(300)
        job.wait_for(lambda: job.count("dead_letters") >= outcome.tried, "dead letters", 120)
        tally(outcome, job, expected)
        reasons = _dead_letter_reasons(job)
        outcome.note += f"restarts {job.restarts()}; reasons: {reasons}; "
        if job.restarts() or outcome.dead_letters != outcome.tried:
            outcome.lost += abs(outcome.tried - outcome.dead_letters)
        return outcome


def _dead_letter_reasons(job: SupervisedJob) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in job.session().execute(f"SELECT reason FROM {job.keyspace}.dead_letters"):
        reason = row.reason.split(":")[0]
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def soak(d: Durations) -> Outcome:
    """``d.soak`` seconds at ``d.soak_rate`` users/s: lag bounded, memory flat, count exact."""
    length = f"{d.soak / 60:.0f} min" if d.soak >= 60 else f"{d.soak:.0f} s"
    outcome = Outcome(f"soak {length} at {d.soak_rate:,.0f} users/s")
    with SupervisedJob("soak", d.job_env) as job:
        job.start()
        with Feeder(job.settings, d.soak_rate) as feeder:
            started = time.monotonic()
            while time.monotonic() - started < d.soak:
                time.sleep(d.sample_every)
                pss = memory_kb(job.process.pid)[0] / 1024 if job.process else 0
                sample = {"t": round(time.monotonic() - started, 1), "lag": job.lag()}
                outcome.samples.append({**sample, "job_pss_mb": round(pss)})
                say(f"  soak {sample['t']:.0f}s: lag {sample['lag']:,}, job PSS {pss:.0f} MB")
            outcome.tried = 1
        _feed_until_recovered(job, feeder, outcome)
        lags = [s["lag"] for s in outcome.samples]
        mems = [s["job_pss_mb"] for s in outcome.samples]
        third = max(1, len(mems) // 3)
        outcome.note += (
            f"lag max {max(lags):,}; job PSS first third {sorted(mems[:third])[third // 2]} MB, "
            f"last third {sorted(mems[-third:])[third // 2]} MB; restarts {job.restarts()}; "
        )
        return outcome


SCENARIOS: dict[str, Callable[[Durations], Outcome]] = {
    "kill": stream_job_killed,
    "cassandra": cassandra_down,
    "kafka": kafka_restarted,
    "api": api_faults,
    "retry": airflow_retry,
    "bad": bad_messages,
    "soak": soak,
}
