"""`./run.sh faults`: run the scenarios, print the table, keep JSON (and the soak's chart)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pipeline import config
from script import stack
from script.arguments import Parser
from script.faults.nodes import NODE_SCENARIOS, require_cluster
from script.faults.rig import Outcome, say
from script.faults.scenarios import FULL, SCENARIOS, SHORT
from script.layout import STATE, StackError
from script.services import STACK, pipeline_services

# What the scenarios run against (Airflow and its database only for `retry`: the user's `up`).
NEEDED = pipeline_services()
EVERY = {**SCENARIOS, **NODE_SCENARIOS}


def default_scenarios() -> str:
    """The topology's: the node scenarios on a cluster, the others on one node of each."""
    cluster = config.load().stack.topology == "cluster"
    return ",".join(NODE_SCENARIOS if cluster else SCENARIOS)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = Parser(
        prog="./run.sh faults",
        description="Break the pipeline on purpose and count: users sent, rows, dead letters, "
        "lost (must be 0), extra (must be 0), time to recover.",
    )
    p.add_argument(
        "--scenarios",
        default=default_scenarios(),
        help=f"comma-separated, of: {', '.join(EVERY)} (default, for this topology: %(default)s)",
    )
    p.add_argument("--short", action="store_true", help="the suite's shorter durations")
    args = p.parse_args(argv)
    unknown = set(args.scenarios.split(",")) - set(EVERY)
    if unknown:
        p.error(
            f"--scenarios {args.scenarios}: a comma-separated list of {', '.join(EVERY)} is needed"
        )
    if set(args.scenarios.split(",")) & set(NODE_SCENARIOS):
        try:
            require_cluster()
        except StackError as exc:
            p.error(f"--scenarios {args.scenarios}: {exc}")
    return args


def write_json(path: Path, outcomes: list[Outcome]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([o.as_dict() for o in outcomes], indent=1))


def table(outcomes: list[Outcome]) -> str:
    head = f"{'SCENARIO':<52}{'TRIED':>6}{'SENT':>11}{'ROWS':>11}{'DEAD':>6}{'LOST':>6}{'EXTRA':>6}"
    lines = [head + f"{'RECOVER':>9}"]
    for o in outcomes:
        recover = f"{o.recover_s:.1f}s" if o.recover_s is not None else "-"
        lines.append(
            f"{o.scenario:<52}{o.tried:>6}{o.sent:>11,}{o.rows:>11,}{o.dead_letters:>6}"
            f"{o.lost:>6}{o.extra:>6}{recover:>9}"
        )
    lines += [f"  {o.scenario}: {o.note.rstrip('; ')}" for o in outcomes if o.note]
    lines += [f"  {o.scenario}: FAILED: {o.error}" for o in outcomes if o.error]
    return "\n".join(lines)


def chart(path: Path, outcome: Outcome) -> None:
    """The soak's lag and the job's PSS over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t"] for s in outcome.samples]
    fig, (lag, pss) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    lag.plot(t, [s["lag"] for s in outcome.samples])
    lag.set_ylabel("lag (messages)")
    pss.plot(t, [s["job_pss_mb"] for s in outcome.samples])
    pss.set_ylabel("stream job PSS (MB)")
    pss.set_xlabel("seconds")
    pss.set_ylim(bottom=0)
    fig.suptitle(outcome.scenario)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    durations = SHORT if args.short else FULL
    out = STATE / "faults" / time.strftime("%Y%m%d-%H%M%S")
    chosen = set(args.scenarios.split(","))
    needed = NEEDED
    if chosen <= set(NODE_SCENARIOS):  # they feed the topic directly: no schema registry
        needed = [name for name in NEEDED if name != "schema-registry"]
    stack.up(needed)
    outcomes: list[Outcome] = []
    try:
        for name in args.scenarios.split(","):
            say(f"{name}: running")
            started = time.monotonic()
            try:
                outcome = EVERY[name](durations)
            except StackError as exc:  # the next scenarios still run; the table says why
                outcome = Outcome(name, error=str(exc))
            outcomes.append(outcome)
            elapsed = time.monotonic() - started
            if outcome.error:
                say(f"{name}: FAILED: {outcome.error} ({elapsed:.0f}s)")
            else:
                say(f"{name}: lost {outcome.lost}, extra {outcome.extra} ({elapsed:.0f}s)")
            if outcome.samples:
                out.mkdir(parents=True, exist_ok=True)
                chart(out / f"{name}.png", outcome)
                say(f"{name}: chart {out / f'{name}.png'}")
    finally:
        write_json(out / "results.json", outcomes)
        print()
        print(table(outcomes))
        print(f"\nJSON: {out / 'results.json'}")
        for service in STACK:  # what a scenario stopped runs again
            if service.name in needed:
                stack.start_service(service)
    return 0 if all(o.ok for o in outcomes) else 1
