"""`./run.sh` with no command: set up, run the whole pipeline once, and show that it worked.

Starts the local stack and the stream job, unpauses and triggers the DAG (`user_automation`) through
Airflow's API (the scheduler runs it), waits until every user it sent is in Cassandra, and
prints a report: counts, elapsed time, end-to-end latency, sample rows, where to look next.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import time
from typing import Any

import requests

from pipeline import config
from pipeline.randomuser import run_seed, whole_pages
from script import stack
from script.airflow_api import AirflowClient
from script.arguments import Parser, UsageError
from script.layout import StackError
from script.pipeline_status import (
    cassandra_session,
    count_rows,
    percentile,
    stream_progress,
    token_slices,
)
from script.services import STREAM, named
from script.services.airflow import airflow_admin, record_users_api, scheduler_users_api, url
from script.services.standin import drop_rendered, render_ahead, standin_url

DAG_ID = config.DAG_ID
TASK_ID = "stream_users"
PUBLIC_API = "https://randomuser.me/api/"
AIRFLOW = named("airflow")


def say(message: str) -> None:
    print(f"[run] {message}", flush=True)


def choose_api(offline: bool, env_url: str | None) -> tuple[str, bool]:
    """(URL the DAG fetches from, whether it is the bundled stand-in); starts nothing."""
    if env_url:
        return env_url, False
    if not offline:
        try:
            requests.get(PUBLIC_API, params={"results": 1}, timeout=5).raise_for_status()
            return PUBLIC_API, False
        except requests.RequestException as exc:
            say(
                f"randomuser.me is unreachable ({exc.__class__.__name__}): using the bundled "
                "randomuser-compatible server instead (--offline skips this check)"
            )
    return standin_url(), True


def use_api(api_url: str) -> None:
    """Make ``api_url`` the API of every run of the DAG from now on (scheduled, UI-triggered):
    recorded for Airflow's processes, which are restarted when they run with another."""
    record_users_api(api_url)
    if AIRFLOW.pid() and scheduler_users_api() != api_url:
        before = scheduler_users_api() or PUBLIC_API
        say(f"Airflow's runs used {before}: restarting Airflow so that they use {api_url}")
        stack.stop_service(AIRFLOW)
        stack.start_service(AIRFLOW)


def manual_run_id() -> str:
    """A run id as Airflow names a run triggered now (``manual__`` and the time)."""
    return f"manual__{datetime.datetime.now(datetime.UTC).isoformat()}"


def render_run_ahead(api_url: str, conf: dict[str, Any], run_id: str) -> bool:
    """Have the stand-in render the pages run ``run_id`` will fetch before it starts, as
    randomuser.me renders on its own servers: rendered as asked, a page of 5,000 users took
    0.34 s of a core on a slow day, 14 % of one at 2,000 users/s, on the cores the pipeline
    runs on. False when the run's count is open or it asks for nationalities (pages a plain
    seed does not name)."""
    api = config.load_for_run(conf).api
    pages = whole_pages(api)
    if not pages or api.nat:
        return False
    started = time.monotonic()
    size = render_ahead(api_url, run_seed(api, run_id), api.per_request, pages)
    say(
        f"the stand-in rendered the run's {len(pages)} pages ahead ({size / 1e6:.0f} MB in "
        f"{time.monotonic() - started:.1f}s), as randomuser.me renders on its own servers"
    )
    return True


def client() -> AirflowClient:
    return AirflowClient(url(), *airflow_admin())


STALL_SECONDS = 300  # no committed batch for this long while messages wait: the job is stuck


def wait_caught_up(settings: config.Settings, timeout: float) -> None:
    """Wait until the stream job has committed every offset the topic holds.

    Fails, naming the log and the fix, when the job exits, commits nothing for
    ``STALL_SECONDS`` while it lags, or is still behind after ``timeout``.
    """
    started = time.monotonic()
    last = -1.0
    batch, moved = None, started
    while True:
        progress = stream_progress(settings)
        if progress.end_offsets and progress.lag == 0:
            return
        now = time.monotonic()
        if progress.batch != batch:
            batch, moved = progress.batch, now
        elapsed = now - started
        if elapsed > timeout or now - moved > STALL_SECONDS:
            raise StackError(
                f"the stream job is {progress.lag:,} messages behind and committed no batch for "
                f"{now - moved:.0f}s: see .stack/logs/spark-stream.log; restart it with "
                "`./run.sh stream stop && ./run.sh stream` (it resumes from its checkpoint)"
            )
        if elapsed - last >= 10:
            say(
                f"stream job: {progress.messages - progress.lag:,}/{progress.messages:,} "
                f"messages read, lag {progress.lag:,} ({elapsed:.0f}s)"
            )
            last = elapsed
        if STREAM.pid() is None:
            raise StackError("the stream job exited: see .stack/logs/spark-stream.log")
        time.sleep(2)


def run_rows(session, c: config.CassandraSettings, since_ms: int) -> list[Any]:
    """Rows this run wrote or rewrote: their produce time is after the run started. Read one
    token range at a time (a few at once), so that no request scans the whole table."""
    from cassandra.concurrent import execute_concurrent_with_args

    query = session.prepare(
        f"SELECT id, first_name, last_name, email, post_code, produced_at, "
        f"writetime(email) AS written_us FROM {c.keyspace}.{c.table} "
        f"WHERE token(id) > ? AND token(id) <= ? AND produced_at >= ? ALLOW FILTERING"
    )
    ranges = [(low, high, since_ms) for low, high in token_slices()]
    rows: list[Any] = []
    for ok, result in execute_concurrent_with_args(session, query, ranges, concurrency=4):
        if not ok:
            raise result
        rows.extend(result)
    return rows


def rate_line(stats: dict[str, Any]) -> str:
    """The rate a run was paced at and the one it reached over its sending, from its counts
    (the wait for the users API's first page is not sending: it is said after)."""
    reached = float(stats.get("rate_per_second") or 0)
    asked = float(stats.get("paced_per_second") or 0)
    span = f" in {float(stats.get('seconds') or 0):.1f} s of sending"
    if stats.get("first_page_seconds") is not None:
        span += f" (first page after {float(stats['first_page_seconds']):.1f} s)"
    if not asked:
        return f"unpaced, reached {reached:,.0f} users/s{span}"
    return f"paced at {asked:,.0f} users/s, reached {reached:,.0f} ({reached / asked:.0%}){span}"


# A stack just started runs its first seconds of load cold: its JVMs (the stream job,
# Cassandra, Kafka) compile the code the run makes hot while it flows, on the same cores
# (docs/benchmark.md, "The first run's first seconds, said apart"): the report says them apart.
WARMING_SECONDS = 10


def latency_line(produced_ms: list[int], latencies_ms: list[float]) -> str:
    """End-to-end latency, median and p95, of a run's rows (each row's produce time and its
    latency, in ms); when the sending lasted over twice ``WARMING_SECONDS``, the p95 of its
    first ``WARMING_SECONDS`` and of the rest too."""
    line = (
        f"median {statistics.median(latencies_ms) / 1000:.2f}s, "
        f"p95 {percentile(latencies_ms, 0.95) / 1000:.2f}s (produce -> Cassandra write)"
    )
    first = min(produced_ms)
    if max(produced_ms) - first <= 2 * WARMING_SECONDS * 1000:
        return line
    cut = first + WARMING_SECONDS * 1000
    early = [lat for t, lat in zip(produced_ms, latencies_ms, strict=True) if t < cut]
    later = [lat for t, lat in zip(produced_ms, latencies_ms, strict=True) if t >= cut]
    return (
        f"{line}\n{'':21}first {WARMING_SECONDS} s of sending p95 "
        f"{percentile(early, 0.95) / 1000:.2f}s, the rest p95 "
        f"{percentile(later, 0.95) / 1000:.2f}s"
    )


def add_arguments(parser: Parser) -> None:
    """The options of a run (`./run.sh [OPTIONS]`): each sets a DAG parameter for the run and is
    read by the rule of the variable it overrides (``config.RUN_PARAMS``)."""
    parser.add_argument(
        "--offline",
        action="store_true",
        help="use the bundled randomuser-compatible server, do not try the internet",
    )
    parser.add_checked(
        "--users",
        _param_rule("total"),
        "0: the DAG's time budget",
        default=0,
        help="send this many users (default: the DAG's USERS_RUN_SECONDS budget)",
    )
    parser.add_checked(
        "--seed", _param_rule("seed"), default="", help="randomuser seed for a reproducible run"
    )
    parser.add_checked(
        "--users-per-second",
        _param_rule("users_per_second"),
        "0: unpaced",
        default=None,
        help="send rate of this run (default: USERS_PER_SECOND; 0: unpaced)",
    )


def _param_rule(name: str) -> config.Variable:
    return config.BY_NAME[config.RUN_PARAMS[name]]


def run_conf(args: argparse.Namespace, env_url: str | None) -> dict[str, Any]:
    """The DAG run's conf from the parsed options; ``UsageError`` when they contradict each
    other, ``ConfigError`` when the run they make with the settings has no bound."""
    if args.offline and env_url and env_url != standin_url():
        raise UsageError(
            f"./run.sh: --offline with USERS_API_URL={env_url}: either, not both (--offline uses "
            f"the bundled stand-in, {standin_url()}); unset USERS_API_URL or drop --offline"
        )
    conf: dict[str, Any] = {}
    if args.users:
        conf["total"] = args.users
    if args.seed:
        conf["seed"] = args.seed
    if args.users_per_second is not None:
        conf["users_per_second"] = args.users_per_second
    config.check_bounded(config.load_for_run(conf).api)
    return conf


def run(args: argparse.Namespace) -> int:
    """Run the pipeline once with the options of ``add_arguments``; 0 when every user landed."""

    began = time.monotonic()
    settings = config.load()
    c = settings.cassandra
    env_url = os.environ.get("USERS_API_URL")
    conf = run_conf(args, env_url)  # before anything starts
    api_url, bundled = choose_api(args.offline, env_url)
    use_api(api_url)  # before `up`: Airflow starts with it, and the stand-in with the stack
    stack.up()
    stack.start_service(STREAM)

    airflow = client()
    airflow.wait_for_dag(DAG_ID)
    airflow.unpause(DAG_ID)
    cluster, session = cassandra_session(c)
    dead_before = count_rows(session, c.keyspace, c.dead_letter_table) or 0
    run_id = manual_run_id()
    ahead = bundled and render_run_ahead(api_url, conf, run_id)
    since_ms = int(time.time() * 1000)
    try:
        run_id = airflow.trigger(DAG_ID, conf, run_id)
        say(f"triggered {DAG_ID} ({run_id}) with {conf}; the scheduler runs it")
        state = airflow.wait_for_run(DAG_ID, run_id)
    finally:
        if ahead:
            drop_rendered(api_url)
    if state != "success":
        raise StackError(
            f"DAG run {run_id} ended {state}: see the task log in the Airflow "
            "UI or .stack/logs/airflow-tasks/"
        )
    lag_at_end = stream_progress(settings).lag  # the job's backlog when the sending ended
    stats = airflow.xcom(DAG_ID, run_id, TASK_ID)
    say(f"DAG run succeeded: {stats}")
    wait_caught_up(settings, timeout=900)

    rows = run_rows(session, c, since_ms)
    dead = (count_rows(session, c.keyspace, c.dead_letter_table) or 0) - dead_before
    cluster.shutdown()
    elapsed = time.monotonic() - began

    user, _ = airflow_admin()
    print()
    print("Pipeline run report")
    used = stats.get("api_url", api_url)
    print(f"  users API          {used}{' (bundled stand-in)' if used == standin_url() else ''}")
    print(f"{'':21}scheduled and UI-triggered runs use it too (USERS_API_URL changes it)")
    print(f"  fetched            {stats.get('fetched', '?'):,}")
    print(
        f"  sent to Kafka      {stats.get('sent', '?'):,}   skipped {stats.get('skipped', 0):,}"
        f"   failed {stats.get('failed', 0):,}"
    )
    print(f"  written            {len(rows):,} rows in {c.keyspace}.{c.table}")
    print(f"  rejected           {dead:,} dead letters in {c.keyspace}.{c.dead_letter_table}")
    print(f"  rate               {rate_line(stats)}")
    print(f"  lag                {lag_at_end:,} messages behind when the sending ended")
    print(f"  elapsed            {elapsed:.0f}s (set-up included)")
    if rows:
        produced = [r.produced_at for r in rows]
        latencies = [r.written_us / 1000 - r.produced_at for r in rows]
        print(f"  end-to-end latency {latency_line(produced, latencies)}")
    print("  sample rows:")
    for r in rows[:3]:
        print(f"    {r.id}  {r.first_name} {r.last_name}  {r.email}  {r.post_code}")
    print()
    print(f"  watch it live at http://localhost:{settings.monitor.port}")
    print(
        f"  Airflow UI   http://localhost:{settings.stack.airflow_port}  (login {user}; "
        "password: AIRFLOW_ADMIN_PASSWORD or .stack/data/airflow/admin-password)"
    )
    print(f"  Spark UI     http://localhost:{settings.stream.ui_port}")
    print(f"  cqlsh        ./run.sh cqlsh -e 'SELECT * FROM {c.keyspace}.{c.table} LIMIT 10;'")
    print("  status       ./run.sh status")
    print("  stop         ./run.sh down")
    sent = stats.get("sent")
    if isinstance(sent, int) and len(rows) < sent:
        raise StackError(f"only {len(rows)} of {sent} sent users are in Cassandra")
    return 0
