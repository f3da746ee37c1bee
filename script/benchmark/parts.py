"""One run of each measurement; each returns plain data, which ``cli`` summarises over runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from typing import Any

from pipeline import config, contract, producer
from pipeline.randomuser import RandomUserClient, whole_pages
from script.benchmark import stats
from script.benchmark.memory import CpuMeter, idle_cpu, service_pss_mb
from script.harness.side import WORKER, LoadGen, SideJob, drop_topic
from script.layout import REPO, StackError
from script.pipeline_status import topic_end_offsets
from script.services.stream import stream_env


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


SIDE_JOB = "side stream job"  # its name among the services' in the CPU and memory figures
WARM_BATCHES = 4
WARM_ROUNDS = 5
# A window's load flows this long before its figures start (``stats.split_lead_in``): long
# enough for the second of users an idle query lets gather (SPARK_IDLE_POLL_MS) to be read.
# Every user of the lead-in must still be written; its latencies are kept apart.
LEAD_IN_SECONDS = 3


def lead_in_end(gen: LoadGen) -> int:
    """When ``gen``'s lead-in ends and its window's figures start (ms since the epoch)."""
    return gen.start_ms + LEAD_IN_SECONDS * 1000


# --- shared: a warm side job and one window of steady offered load ---------------------


def warm_up(job: SideJob, rate: float, seconds: float) -> None:
    """Start ``job`` and send it ``seconds`` of load at ``rate``, until it has read all of it.

    The first batches pay for JIT compilation and the connectors' sessions; the figures are
    for a running job, as in the pipeline. The load goes on (in rounds of ``seconds``) until
    the job has committed ``WARM_BATCHES`` batches.
    """
    job.start()
    job.wait_ready()
    for attempt in range(WARM_ROUNDS):
        LoadGen(job.topic, rate, seconds=seconds, tag=f"warm{attempt}").wait()
        if not job.wait_drained(timeout=300):
            raise StackError(f"{job.name}: warm-up not read after 300 s: see {job.log}")
        batch, _ = job.committed()
        if batch is not None and batch + 1 >= WARM_BATCHES:
            return


def offered_window(
    job: SideJob, rate: float, seconds: float, tag: str, sample_memory: bool = False
) -> dict[str, Any]:
    """Offer ``rate`` users/s to a warm ``job`` for a lead-in (``LEAD_IN_SECONDS``) and then
    ``seconds``; latency of the ``seconds`` (of the lead-in apart), lag and cost of both."""
    lags: list[int] = []
    memory: dict[str, float] = {}
    batches_before = len(job.batch_timings())
    gen = LoadGen(job.topic, rate, seconds=LEAD_IN_SECONDS + seconds, tag=tag)
    measured_from = lead_in_end(gen)
    cpu = CpuMeter({SIDE_JOB: job.proc.pid} if job.proc else {})
    while gen.running:
        cpu.sample()
        lags.append(job.lag())
        if sample_memory and not memory and time.time() * 1000 - measured_from > seconds * 500:
            memory = {**service_pss_mb(), SIDE_JOB: job.pss_mb()}
        time.sleep(0.5)
    report = gen.wait()
    drained = job.wait_drained(timeout=max(120.0, 4 * seconds))
    used = cpu.used()
    rows = job.rows(report["start_ms"], report["end_ms"] + 1)
    lead_in, latencies = stats.split_lead_in(((p, w / 1000 - p) for p, w in rows), measured_from)
    result: dict[str, Any] = {
        "rate": rate,
        "sent": report["sent"],
        "achieved_rate": report["achieved_rate"],
        "rows": len(rows),
        "drained": drained,
        "falling_behind": stats.falling_behind(lags, rate),
        "lag": lags,
        "offered_per_second": report["per_second"],
        "memory_mb": memory,
        # What the window's users cost each process (the sending, then the catching up), and
        # the phases of the batches that read them.
        "cpu_seconds_per_1000": {
            name: 1000 * cpu_s / max(1, report["sent"]) for name, cpu_s in used.items()
        },
        "batch_timings": job.batch_timings()[batches_before:],
    }
    if lead_in:
        result["lead_in"] = stats.latency_figures(lead_in)
    if latencies:
        result.update(stats.latency_figures(latencies))
        result["per_second"] = stats.per_second(rows, measured_from, math.ceil(seconds))
    return result


# --- a. latency at a steady rate --------------------------------------------------------


def latency(rate: float, seconds: float, warm_seconds: float) -> dict[str, Any]:
    with SideJob("latency") as job:
        warm_up(job, rate, warm_seconds)
        window = offered_window(job, rate, seconds, "window", sample_memory=True)
    if window["rows"] != window["sent"]:
        raise StackError(f"latency run: {window['rows']} rows for {window['sent']} users sent")
    return window


def cost(rate: float, seconds: float, warm_seconds: float) -> dict[str, Any]:
    """A latency window at ``rate``, for what its users cost each process and its batches'
    phases (``offered_window``)."""
    with SideJob(f"cost{rate:.0f}", timings=True) as job:
        warm_up(job, rate, warm_seconds)
        return offered_window(job, rate, seconds, "cost")


def spark_floor(rate: float, seconds: float, warm_seconds: float) -> dict[str, Any]:
    """Floor (a): the same load through a query with the job's source and trigger that parses
    and writes nothing (script/benchmark/floor_job.py): Kafka send time to the end of the
    micro-batch that read it."""
    from script.benchmark.floor_job import floor_file

    with SideJob("floor", main=REPO / "script" / "benchmark" / "floor_job.py") as job:
        out = floor_file(str(job.checkpoint))
        try:
            warm_up(job, rate, warm_seconds)
            gen = LoadGen(job.topic, rate, seconds=LEAD_IN_SECONDS + seconds, tag="floor")
            report = gen.wait()
            if not job.wait_drained(timeout=max(120.0, 4 * seconds)):
                raise StackError(f"{job.name}: the floor query did not catch up: see {job.log}")
            seen = [
                (sent, batch["end_ms"] - sent)
                for batch in map(json.loads, out.read_text().splitlines())
                for sent in batch["sent_ms"]
                if report["start_ms"] <= sent <= report["end_ms"]
            ]
        finally:
            out.unlink(missing_ok=True)
    if len(seen) < report["sent"]:
        raise StackError(f"floor run: {len(seen)} of {report['sent']} records seen")
    lead_in, latencies = stats.split_lead_in(seen, lead_in_end(gen))
    return {
        "sent": report["sent"],
        **stats.latency_figures(latencies),
        "lead_in": stats.latency_figures(lead_in),
    }


# --- b. sustainable rate ----------------------------------------------------------------


def passes(window: dict[str, Any], p99_limit: float) -> tuple[bool, str]:
    """Whether a window of the rate search passes, and why not."""
    if window["achieved_rate"] < 0.95 * window["rate"]:
        return False, f"load generator reached {window['achieved_rate']:,.0f}/s only"
    if not window["drained"] or window["rows"] < window["sent"]:
        return False, f"{window['rows']:,} of {window['sent']:,} rows written"
    if window["falling_behind"]:
        return False, "lag grew"
    if window["p99"] > p99_limit:
        return False, f"p99 {window['p99']:.2f} s"
    return True, f"p99 {window['p99']:.2f} s"


def rate_search(
    search: stats.RateSearch, seconds: float, warm_seconds: float, p99_limit: float
) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    with SideJob("rate") as job:
        warm_up(job, 1000, warm_seconds)
        while (rate := search.next_rate()) is not None:
            window = offered_window(job, rate, seconds, f"r{len(steps)}")
            ok, why = passes(window, p99_limit)
            search.record(rate, ok)
            say(f"  rate {rate:,.0f}/s: {'pass' if ok else 'fail'} ({why})")
            steps.append(
                {
                    "rate": rate,
                    "passed": ok,
                    "why": why,
                    **{k: window.get(k) for k in ("achieved_rate", "p50", "p95", "p99", "lag")},
                }
            )
            if not window["drained"]:
                say("  the job did not catch up: the search ends here")
                break
    return {"sustainable": search.passed, "at_ceiling": search.at_ceiling, "steps": steps}


# --- c. classify ------------------------------------------------------------------------


def classify_rates(messages: int, runs: int) -> list[float]:
    """``runs`` timings of ``parsing.classify`` in a local Spark session of its own."""
    out = subprocess.run(
        [*WORKER, "classify_rate", str(messages), str(runs)],
        env={**stream_env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise StackError(f"classify benchmark failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rates"]


def write_ceiling(rows: int, runs: int) -> list[float]:
    """Floor (b): ``runs`` rates of the connector writing ``rows`` pre-parsed rows, in a Spark
    session of its own (local[*], the job's connector settings) on a side keyspace."""
    from script.jars import spark_jars
    from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace

    overrides = {"CASSANDRA_KEYSPACE": f"bench_ceiling_{os.urandom(3).hex()}"}
    login = set_up_side_keyspace(overrides)
    jars = ",".join(str(j) for j in spark_jars())
    memory = config.load().stack.spark_driver_memory
    try:
        out = subprocess.run(
            [*WORKER, "write_ceiling", str(rows), str(runs)],
            env={
                **stream_env(),
                **overrides,
                **login,
                "PYTHONPATH": str(REPO),
                "PYSPARK_SUBMIT_ARGS": (
                    f"--master local[*] --jars {jars} --driver-memory {memory} pyspark-shell"
                ),
            },
            capture_output=True,
            text=True,
        )
    finally:
        drop_side_keyspace(overrides)
    if out.returncode != 0:
        raise StackError(f"write ceiling benchmark failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])["rates"]


# --- d. sink ----------------------------------------------------------------------------


def sink(messages: int) -> dict[str, float]:
    """A fresh job draining ``messages`` pre-filled valid messages into Cassandra."""
    with SideJob("sink") as job:
        LoadGen(job.topic, 0, count=messages, tag="fill").wait()
        spawned = job.start()
        ready = job.wait_ready()
        if not job.wait_drained(timeout=900):
            raise StackError(f"{job.name}: {messages:,} messages not drained in 900 s")
        rows = job.rows()
    if len(rows) != messages:
        raise StackError(f"sink run: {len(rows):,} rows for {messages:,} messages")
    last = max(w for _, w in rows) / 1e6
    return {
        "rows_per_second": messages / (last - ready),
        "start_to_ready": ready - spawned,
        "ready_to_last_row": last - ready,
    }


# --- e. producer ------------------------------------------------------------------------


def producer_rate(url: str, users: int, run: int, *, ahead: bool) -> float:
    """The producer's own run (fetch, format, validate, send, flush), unpaced, from the stand-in
    at ``url``. With ``ahead`` the stand-in renders the run's pages before it starts
    (``POST /_pages``), as randomuser.me renders on its own servers: the run's two cores then
    do the producer's work only. Without, the stand-in renders each page as it is asked for."""
    from script.services.standin import drop_rendered, render_ahead

    topic = f"bench-producer-{os.urandom(3).hex()}"
    seed = f"bench-{run}-{'ahead' if ahead else 'live'}"
    settings = config.load(
        {
            **os.environ,
            "USERS_API_URL": url,
            "USERS_TOTAL": str(users),
            "USERS_SEED": seed,
            "KAFKA_TOPIC": topic,
            "USERS_PER_SECOND": "0",  # the producer's own speed, not the DAG's default pace
        }
    )
    if ahead:
        render_ahead(url, seed, settings.api.per_request, whole_pages(settings.api))
    try:
        return producer.run(settings).rate
    finally:
        drop_topic(settings, topic)
        if ahead:
            drop_rendered(url)


def raw_send_rate(users: int, run: int) -> float:
    """Floor (c): kafka-python's own send rate with the producer's settings (KAFKA_*): values
    encoded beforehand, sent to a fresh topic, flushed, every send acknowledged."""
    from pipeline.formatting import Skip, format_user
    from standin import generate_users

    topic = f"bench-raw-{os.urandom(3).hex()}"
    settings = config.load({**os.environ, "KAFKA_TOPIC": topic})
    records = []
    page = 1
    while len(records) < users:
        for raw in generate_users(f"bench-raw-{run}", page, 5000):
            record = format_user(raw, int(time.time() * 1000))
            if not isinstance(record, Skip):
                records.append((producer.encode_key(record), producer.encode_value(record)))
        page += 1
    records = records[:users]
    producer.ensure_topic(settings.kafka)
    kafka = producer.create_producer(settings.kafka)
    try:
        started = time.perf_counter()
        # Each with the schema-id header the producer's records carry.
        headers = [(contract.SCHEMA_ID_HEADER, b"1")]
        sent = [kafka.send(topic, key=k, value=v, headers=headers) for k, v in records]
        kafka.flush(timeout=300)
        elapsed = time.perf_counter() - started
        for future in sent:
            future.get(timeout=0)  # raises unless the broker acknowledged it
    finally:
        kafka.close()
        drop_topic(settings, topic)
    return users / elapsed


def core_seconds(additions: int = 20_000_000) -> float:
    """Floor (d): one core's speed, seconds for a plain Python loop of ``additions`` additions
    (machines of one kind differ; this tells a slow one)."""
    total, started = 0, time.perf_counter()
    for i in range(additions):
        total += i
    return time.perf_counter() - started


def fetch_rates(url: str, users: int, run: int) -> tuple[float, float]:
    """(users/s one request per user, users/s in one batched request) from the stand-in."""
    client = RandomUserClient(config.load({**os.environ, "USERS_API_URL": url}).api)
    started = time.perf_counter()
    for page in range(1, users + 1):
        client.fetch(1, f"bench-single-{run}", page)
    single = users / (time.perf_counter() - started)
    batch = min(users * 10, 5000)
    started = time.perf_counter()
    client.fetch(batch, f"bench-batch-{run}", 1)
    return single, batch / (time.perf_counter() - started)


# --- f. restart -------------------------------------------------------------------------


def restart(rate: float, warm_seconds: float, settle_seconds: float = 5.0) -> dict[str, float]:
    """Stop (SIGTERM) and kill (SIGKILL) a job while users flow; how soon it is back.

    "First batch" is the first commit after the restart (its commit file's time); "first new
    row" is the earliest Cassandra write time after the old job was gone (every later write is
    the new job's); the backlog is gone once the lag is back to its steady level for
    ``settle_seconds``.
    """
    with SideJob("restart") as job:
        gen = LoadGen(job.topic, rate, tag="flow")
        try:
            job.start()
            job.wait_ready()
            job.wait_commit_after(None)
            # Caught up with the start's backlog, then: how far behind it normally is.
            wait_backlog_gone(job, int(rate * 3), settle_seconds)
            steady: list[int] = []
            until = time.monotonic() + warm_seconds
            while time.monotonic() < until:
                steady.append(job.lag())
                time.sleep(0.25)
            threshold = max(max(steady), int(rate * 2))

            stopping = time.time()
            job.stop()
            stopped = time.time()
            last, _ = job.committed()
            spawned = job.start()
            term_ready = job.wait_ready()
            _, term_first = job.wait_commit_after(last)
            wait_backlog_gone(job, threshold, settle_seconds)

            killed = time.time()
            job.kill()
            last, _ = job.committed()
            job.start()
            kill_ready = job.wait_ready()
            _, kill_first = job.wait_commit_after(last)
            gone = wait_backlog_gone(job, threshold, settle_seconds)
        finally:
            gen.stop()
        writes = sorted(w / 1e6 for _, w in job.rows())
    return {
        "sigterm_stop_seconds": stopped - stopping,
        "sigterm_start_to_ready": term_ready - spawned,
        "sigterm_ready_to_first_row": first_after(writes, stopped) - term_ready,
        "sigterm_ready_to_first_batch": term_first - term_ready,
        "sigkill_ready_to_first_row": first_after(writes, killed) - kill_ready,
        "sigkill_ready_to_first_batch": kill_first - kill_ready,
        "sigkill_backlog_gone_after_kill": gone - killed,
        "sigkill_backlog_gone_after_ready": gone - kill_ready,
        "lag_threshold": threshold,
    }


def first_after(times: list[float], moment: float) -> float:
    """The first of the sorted ``times`` after ``moment``."""
    later = [t for t in times if t > moment]
    if not later:
        raise StackError("no row was written after the restart")
    return later[0]


def wait_backlog_gone(job: SideJob, threshold: int, settle: float, timeout: float = 600) -> float:
    """Wall time from which the lag stayed at or below ``threshold`` for ``settle`` seconds."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples.append((time.time(), job.lag()))
        gone = stats.backlog_gone_at(samples, threshold)
        if gone is not None and samples[-1][0] - gone >= settle:
            return gone
        time.sleep(0.25)
    raise StackError(f"{job.name}: backlog above {threshold:,} after {timeout:.0f} s")


IDLE_ATTEMPTS = 3


def quiet_cpu(seconds: float) -> dict[str, float]:
    """``idle_cpu`` over a span in which no message reached the users' topic: a span in which
    some did (the DAG's daily run, someone's trigger) is said and measured again."""
    settings = config.load()
    for _ in range(IDLE_ATTEMPTS):
        before = sum(topic_end_offsets(settings).values())
        cpu = idle_cpu(seconds)
        flowed = sum(topic_end_offsets(settings).values()) - before
        if not flowed:
            return cpu
        say(
            f"not idle: {flowed:,} messages reached {settings.kafka.topic} while it was "
            "measured (a DAG run?); measuring again"
        )
    raise StackError(
        f"users kept reaching {settings.kafka.topic} over {IDLE_ATTEMPTS} idle measurements: "
        "pause user_automation in Airflow's UI (or wait for its run to end), then run the "
        "idle part again"
    )


def idle(seconds: float, rest: bool = True) -> dict[str, Any]:
    """Each service's CPU (% of one core) over ``seconds`` with nothing flowing: first with
    nobody on the pipeline page (its reader rests), then with the page open in Chromium (as a
    user watching it), and the page's PSS at the end."""
    from script.browser import chromium
    from script.services import named
    from script.services.monitor import UNWATCHED

    monitor = named("monitor")
    unwatched = quiet_cpu(seconds)
    watched = None
    with chromium() as browser:
        if monitor.pid():
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{monitor.port}/")
            page.wait_for_selector("#job-state", timeout=60_000)
            watched = quiet_cpu(seconds)
    if rest and monitor.pid():
        time.sleep(UNWATCHED)  # the reader rests again before the next run
    return {
        "cpu_percent": unwatched,
        "watched_cpu_percent": watched,
        "monitor_pss_mb": service_pss_mb().get("monitor"),
    }
