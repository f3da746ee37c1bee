"""`./run.sh bench`: the command line, which parts to run, and the order of the output."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pipeline import config
from script import stack
from script.arguments import Parser, rule
from script.benchmark import parts, report, stats
from script.benchmark.memory import service_pss_mb
from script.layout import STATE, say
from script.services import STACK, STANDIN, STREAM, pipeline_services
from script.services.standin import standin_url

# In the order they run: the idle stack first, before any load.
PARTS = (
    "idle",
    "floor",
    "latency",
    "cost",
    "rate",
    "classify",
    "sink",
    "producer",
    "restart",
    "memory",
    "fetch",
)
NEEDED = pipeline_services()  # every node; the producer publishes its schema
# The parts that run a Spark query of their own: the user's stream job is stopped meanwhile (two
# Spark jobs on a small machine would measure neither), and started again at the end.
SIDE_JOB_PARTS = {"floor", "latency", "cost", "rate", "sink", "restart"}


# The options' rules: counts and rates of at least 1, windows of at least 1 s, a warm-up and a
# latency limit of 0 s or more.
COUNT = rule(config.WHOLE, minimum=1)
RATE = rule(config.NUMBER, minimum=1)
SECONDS = rule(config.NUMBER)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The options, each read by its rule; ``UsageError`` in one line before anything starts."""
    p = Parser(
        prog="./run.sh bench",
        description="Throughput, latency, restart and memory figures of the pipeline, "
        "each the median (min..max) of --runs runs.",
    )
    p.add_checked("--runs", COUNT, default=3, help="runs per figure (default 3)")
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated, of: %(default)s")
    p.add_checked(
        "--rate", RATE, default=1000, help="users/s of the latency and restart runs (default 1000)"
    )
    p.add_checked("--seconds", RATE, default=60, help="latency window (default 60)")
    p.add_checked(
        "--search-seconds",
        RATE,
        default=None,
        help="window of each rate-search step (default: --seconds, at most 30)",
    )
    p.add_checked(
        "--warm-seconds",
        SECONDS,
        default=30,
        help="load a fresh job gets before its clock starts (default 30: the user's job runs "
        "for hours, and a JVM's compiled code takes that long to settle)",
    )
    p.add_checked("--p99-limit", SECONDS, default=3.0, help="rate search: p99 limit in s")
    p.add_checked("--rate-step", RATE, default=4000, help="rate search: step up by")
    p.add_checked("--rate-ceiling", RATE, default=40000, help="rate search: highest rate")
    p.add_checked("--rate-resolution", RATE, default=1000, help="rate search: bisect to")
    p.add_checked("--classify-messages", COUNT, default=100_000)
    p.add_checked("--sink-messages", COUNT, default=200_000)
    p.add_checked("--users", COUNT, default=50_000, help="users per producer run")
    p.add_checked(
        "--idle-seconds", RATE, default=60, help="idle part: the span CPU is measured over"
    )
    p.add_argument(
        "--cost-rates",
        default="1000,4000",
        help="cost part: the steady rates (users/s) whose CPU per user is measured",
    )
    args = p.parse_args(argv)
    unknown = set(args.parts.split(",")) - set(PARTS)
    if unknown:
        p.error(f"--parts {args.parts}: a comma-separated list of {', '.join(PARTS)} is needed")
    try:
        args.cost_rates = [config.read(RATE, r) for r in args.cost_rates.split(",")]
    except ValueError as exc:
        p.error(f"--cost-rates {args.cost_rates}: {exc}")
    if args.search_seconds is None:
        args.search_seconds = min(args.seconds, 30.0)
    return args


def ensure_services() -> None:
    """Reuse the services it needs when they answer (whoever started them), else start them."""
    for service in STACK:
        if service.name in NEEDED:
            if service.probe() is None:
                say(f"{service.name}: answering on :{service.port}, reused")
            else:
                stack.up([service.name])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    wanted = [p for p in PARTS if p in args.parts.split(",")]
    ensure_services()
    out = STATE / "bench" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    figures = report.Figures()
    details: dict[str, Any] = {}
    print(f"Benchmark: {', '.join(wanted)}; {args.runs} run(s) each")
    core = [parts.core_seconds() for _ in range(args.runs)]
    figures.add("core_seconds", "one core: 20 M additions in Python (s)", core, 2)
    try:
        if "idle" in wanted:  # the whole stack as the user has it, their stream job included
            idle_part(args, figures, details)
        with user_job_stopped(SIDE_JOB_PARTS.intersection(wanted)):
            run_parts(args, wanted, figures, details)
    finally:
        doc = report.document(vars(args), figures.entries, details)
        report.write_json(out / "results.json", doc)
        print(f"\nJSON:  {out / 'results.json'}")
        if report.write_chart(out / "chart.png", details, args.rate):
            print(f"Chart: {out / 'chart.png'}")
    return 0


def idle_part(args: argparse.Namespace, figures: report.Figures, details: dict[str, Any]) -> None:
    print(
        f"\nIdle stack: CPU (% of one core) of each service over {args.idle_seconds:g} s with "
        "nothing flowing and nobody on the pipeline page; then with the page open in Chromium"
    )
    details["idle"] = idles = [
        parts.idle(args.idle_seconds, rest=run < args.runs - 1) for run in range(args.runs)
    ]
    cpu = [i["cpu_percent"] for i in idles]
    figures.add_each("idle_cpu", "% of a core", cpu, "whole stack", 1)
    watched = [i["watched_cpu_percent"] for i in idles if i["watched_cpu_percent"]]
    if watched:
        figures.add(
            "idle_watched_monitor",
            "pipeline page open: the page's service (% of a core)",
            [w["monitor"] for w in watched],
            1,
        )
        figures.add(
            "idle_watched_total",
            "pipeline page open: whole stack (% of a core)",
            [sum(w.values()) for w in watched],
            1,
        )
    pages = [i["monitor_pss_mb"] for i in idles if i["monitor_pss_mb"]]
    if pages:
        figures.add("idle_monitor_pss_mb", "pipeline page, open (PSS MB)", pages)


@contextmanager
def user_job_stopped(side_parts: set[str]) -> Iterator[None]:
    """Stop the user's stream job while parts with a Spark query of their own run (two Spark
    jobs on a small machine would measure neither); start it again afterwards."""
    job = STREAM
    if not side_parts or not job.pid():
        yield
        return
    say(
        f"{job.name}: stopped while {', '.join(p for p in PARTS if p in side_parts)} run, "
        "started again at the end (it resumes from its checkpoint)"
    )
    stack.stop_service(job)
    try:
        yield
    finally:
        stack.start_service(job)


def cost_part(args: argparse.Namespace, figures: report.Figures, details: dict[str, Any]) -> None:
    """CPU seconds per 1,000 users of each service and the batches' phases, at each cost rate,
    from side jobs of the part's own: only these log their batches' phases (``SideJob``), so
    the latency runs' jobs run as the user's does."""
    windows = {
        rate: [parts.cost(rate, args.seconds, args.warm_seconds) for _ in range(args.runs)]
        for rate in args.cost_rates
    }
    details["cost"] = {
        str(rate): [w["cpu_seconds_per_1000"] for w in ws] for rate, ws in windows.items()
    }
    for rate, ws in windows.items():
        print(f"  at {rate:,.0f} users/s: CPU seconds per 1,000 users, each process")
        figures.add_each(
            f"cpu_per_1000_at_{rate:.0f}",
            "CPU s per 1,000 users",
            [w["cpu_seconds_per_1000"] for w in ws],
            "pipeline",
            3,
        )
        print(f"  at {rate:,.0f} users/s: a micro-batch's phases, median over its batches (ms)")
        medians = [stats.batch_medians(w["batch_timings"]) for w in ws]
        for name in stats.BATCH_FIGURES:
            per_run = [m[name] for m in medians if m]
            if per_run:
                figures.add(f"batch_{name}_at_{rate:.0f}", name, per_run)


def lead_in_figures(window: dict[str, Any]) -> str:
    """A window's p50 and p99, and its lead-in's p99 beside them (``parts.LEAD_IN_SECONDS``)."""
    text = f"p50 {window['p50']:.2f} s, p99 {window['p99']:.2f} s"
    if "lead_in" in window:
        lead_in = window["lead_in"]["p99"]
        text += f" (the {parts.LEAD_IN_SECONDS} s lead-in before it: p99 {lead_in:.2f} s)"
    return text


def run_parts(
    args: argparse.Namespace, wanted: list[str], figures: report.Figures, details: dict[str, Any]
) -> None:
    runs = range(args.runs)
    if "floor" in wanted:
        print(
            f"\nSpark's floor at a steady {args.rate:,.0f} records/s for {args.seconds:g} s: the "
            "job's source and trigger, nothing parsed or written (send time to batch end)"
        )
        details["floor"] = floors = []
        for run in runs:
            floors.append(parts.spark_floor(args.rate, args.seconds, args.warm_seconds))
            parts.say(f"  run {run + 1}: {lead_in_figures(floors[-1])}")
        for q in ("p50", "p95", "p99"):
            figures.add(f"floor_{q}_s", f"Spark's floor {q} (s)", [f[q] for f in floors], 2)
    if "latency" in wanted:
        print(
            f"\na. End-to-end latency at a steady {args.rate:,.0f} users/s for "
            f"{args.seconds:g} s, produce time to Cassandra write time (warm side job)"
        )
        details["latency"] = results = []
        for run in runs:
            results.append(parts.latency(args.rate, args.seconds, args.warm_seconds))
            parts.say(f"  run {run + 1}: {lead_in_figures(results[-1])}")
        for q in ("p50", "p95", "p99"):
            figures.add(f"latency_{q}_s", f"latency {q} (s)", [r[q] for r in results], 2)
        m = figures.medians()
        if "floor_p50_s" in m:
            figures.note(
                f"latency / Spark's floor: p50 {m['latency_p50_s'] / m['floor_p50_s']:.1f}x, "
                f"p99 {m['latency_p99_s'] / m['floor_p99_s']:.1f}x"
            )
        figures.add(
            "latency_achieved_rate",
            "offered rate held (users/s)",
            [r["achieved_rate"] for r in results],
        )
    if "cost" in wanted:
        print(
            "\nCost: CPU seconds per 1,000 users of each process (sending, then catching up) "
            "and the phases of a micro-batch (Spark's durationMs), at "
            f"{', '.join(f'{r:,.0f}' for r in args.cost_rates)} users/s for {args.seconds:g} s"
        )
        cost_part(args, figures, details)
    if "rate" in wanted:
        print(
            f"\nb. Sustainable rate: highest steady users/s with p99 <= {args.p99_limit:g} s "
            f"and no growing lag over {args.search_seconds:g} s windows"
        )
        details["rate_search"] = searches = []
        for run in runs:
            parts.say(f"run {run + 1}")
            search = stats.RateSearch(args.rate_step, args.rate_ceiling, args.rate_resolution)
            searches.append(
                parts.rate_search(search, args.search_seconds, args.warm_seconds, args.p99_limit)
            )
        figures.add(
            "sustainable_rate", "sustainable rate (users/s)", [s["sustainable"] for s in searches]
        )
        if any(s["at_ceiling"] for s in searches):
            figures.note(f"(a run passed at the ceiling, --rate-ceiling {args.rate_ceiling:,.0f})")
    if "classify" in wanted:
        print(
            f"\nc. parsing.classify on {args.classify_messages:,} valid messages, warm, "
            "local Spark session, noop sink"
        )
        rates = parts.classify_rates(args.classify_messages, args.runs)
        details["classify"] = rates
        figures.add("classify_msgs_per_s", "classify (msgs/s)", rates)
    if "sink" in wanted:
        print(
            f"\nd. Sink: a fresh job draining {args.sink_messages:,} pre-filled messages "
            "into Cassandra, from job ready to last row written"
        )
        details["sink"] = sinks = [parts.sink(args.sink_messages) for _ in runs]
        sink = figures.add(
            "sink_rows_per_s", "sink (rows/s)", [s["rows_per_second"] for s in sinks]
        )
        details["write_ceiling"] = ceiling = parts.write_ceiling(args.sink_messages, args.runs)
        floor = figures.add(
            "write_ceiling_rows_per_s", "connector write ceiling, pre-parsed (rows/s)", ceiling
        )
        figures.note(f"sink / write ceiling: {sink.median / floor.median:.0%}")
        if "sustainable_rate" in figures.medians():
            rate = figures.medians()["sustainable_rate"]
            figures.note(f"sustainable rate / write ceiling: {rate / floor.median:.0%}")
        figures.add(
            "sink_start_to_ready_s",
            "job start to ready (s)",
            [s["start_to_ready"] for s in sinks],
            1,
        )
    if "producer" in wanted or "fetch" in wanted:
        started = stack.start_service(STANDIN)  # a process of its own: the API is remote
        try:
            url = standin_url()
            if "producer" in wanted:
                print(
                    f"\ne. Unpaced producer run (fetch, format, validate, send, flush) of "
                    f"{args.users:,} users from the bundled stand-in, its pages rendered ahead "
                    "(the real API renders on its own servers), then rendered as asked for"
                )
                rates = [parts.producer_rate(url, args.users, run, ahead=True) for run in runs]
                details["producer"] = rates
                producer = figures.add("producer_users_per_s", "producer (users/s)", rates)
                live = [parts.producer_rate(url, args.users, run, ahead=False) for run in runs]
                details["producer_live_pages"] = live
                figures.add(
                    "producer_live_pages_users_per_s",
                    "producer, pages rendered live (users/s)",
                    live,
                )
                raw = [parts.raw_send_rate(args.users, run) for run in runs]
                details["raw_send"] = raw
                floor = figures.add("raw_send_users_per_s", "kafka-python raw send (users/s)", raw)
                figures.note(f"producer / raw send: {producer.median / floor.median:.0%}")
            if "fetch" in wanted:
                print(
                    "\nFetching from the stand-in: one request per user (the reference's "
                    "way) against 5,000 per request"
                )
                pairs = [parts.fetch_rates(url, 200, run) for run in runs]
                details["fetch"] = [{"single": s, "batched": b} for s, b in pairs]
                figures.add(
                    "fetch_single_users_per_s",
                    "one request per user (users/s)",
                    [s for s, _ in pairs],
                )
                figures.add(
                    "fetch_batched_users_per_s",
                    "5,000 per request (users/s)",
                    [b for _, b in pairs],
                )
                figures.add("fetch_ratio", "ratio (x)", [b / s for s, b in pairs], 1)
        finally:
            if started:
                stack.stop_service(STANDIN)
    if "restart" in wanted:
        print(
            f"\nf. Restart while {args.rate:,.0f} users/s flow: SIGTERM then SIGKILL of a "
            "warm side job, each followed by a restart"
        )
        details["restart"] = restarts = []
        for run in runs:
            restarts.append(parts.restart(args.rate, args.warm_seconds))
            shown = ", ".join(f"{k} {v:,.1f}" for k, v in restarts[-1].items())
            parts.say(f"  run {run + 1}: {shown}")
        for key, label in (
            ("sigterm_stop_seconds", "SIGTERM: stop, running batch committed (s)"),
            ("sigterm_start_to_ready", "SIGTERM restart: start to ready (s)"),
            ("sigterm_ready_to_first_row", "SIGTERM restart: ready to first new row (s)"),
            ("sigterm_ready_to_first_batch", "SIGTERM restart: ready to first batch (s)"),
            ("sigkill_ready_to_first_row", "SIGKILL restart: ready to first new row (s)"),
            ("sigkill_ready_to_first_batch", "SIGKILL restart: ready to first batch (s)"),
            ("sigkill_backlog_gone_after_kill", "SIGKILL restart: kill to backlog gone (s)"),
            ("sigkill_backlog_gone_after_ready", "SIGKILL restart: ready to backlog gone (s)"),
        ):
            figures.add(f"restart_{key}", label, [r[key] for r in restarts], 1)
    if "memory" in wanted:
        print("\ng. Memory (PSS MB) of each running service and of the side stream job")
        samples = [r["memory_mb"] for r in details.get("latency", []) if r.get("memory_mb")]
        if samples:
            figures.note(f"(sampled mid-window in each latency run, at {args.rate:,.0f} users/s)")
        else:
            figures.note("(no latency run: services only, sampled now)")
            for _ in runs:
                samples.append(service_pss_mb())
                time.sleep(1)
        details["memory_mb"] = samples
        figures.add_each("pss_mb", "PSS MB", samples, "total")
