"""`./run.sh chaos [--minutes M] [--seed S]`: the run, its table, its timeline (JSON, chart)."""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from pipeline import config
from script import stack
from script.arguments import Parser, rule
from script.chaos.check import Count, count
from script.chaos.driver import Driver
from script.chaos.nemesis import Fault, Nemesis
from script.layout import STATE, StackError
from script.pipeline_status import stream_progress, topic_end_offsets
from script.services import STANDIN, STREAM

RATE = 1000  # users per second of every DAG run
RUN_SECONDS = 30  # each DAG run's length at RATE: its users are RATE x RUN_SECONDS
SAMPLE_EVERY = 5.0  # seconds between two lag samples
SETTLE_BOUND = 900.0  # after the last fault: every service ready and the lag 0, or the run fails
SETTLE_PROMISE = 120.0  # what the issue asks: back within 2 minutes of the last fault


def say(message: str) -> None:
    print(f"[chaos] {message}", flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = Parser(
        prog="./run.sh chaos",
        description="Random faults on every service (SIGKILL, SIGSTOP, a clean restart) while "
        "the DAG streams; then count: every user Kafka acknowledged is one row (lost 0, extra 0).",
    )
    p.add_checked("--minutes", rule(config.WHOLE, 1), default=30, help="length (default 30)")
    p.add_checked(
        "--seed", rule(config.WHOLE), default=None, help="the nemesis's seed (default: a new one)"
    )
    return p.parse_args(argv)


class Sampler:
    """The stream job's lag every SAMPLE_EVERY seconds (None while Kafka does not answer)."""

    def __init__(self, settings: config.Settings, started: float) -> None:
        self.settings, self.started = settings, started
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY):
            try:
                lag: int | None = stream_progress(self.settings).lag
            except Exception:  # noqa: BLE001 - Kafka away: a gap in the chart, not a crash
                lag = None
            self.samples.append({"t": round(time.monotonic() - self.started, 1), "lag": lag})

    def stop(self) -> None:
        self._stop.set()
        self.thread.join()


def settle(settings: config.Settings, services: list[Any], since: float) -> float:
    """Seconds from ``since`` until every service is ready and the stream job's lag is 0;
    StackError naming what is still down when SETTLE_BOUND passes first."""
    while True:
        down = [s.name for s in services if s.probe() is not None]
        try:
            lag = stream_progress(settings).lag
        except Exception:  # noqa: BLE001 - Kafka still away
            lag = -1
        if not down and lag == 0:
            return round(time.monotonic() - since, 1)
        if time.monotonic() - since > SETTLE_BOUND:
            raise StackError(
                f"{SETTLE_BOUND:.0f}s after the last fault: still down: {', '.join(down) or '-'}, "
                f"lag {lag}; see `./run.sh status` and .stack/logs/"
            )
        time.sleep(2)


def table(faults: list[Fault], counted: Count, settled_s: float) -> str:
    rows: dict[tuple[str, str], list[Fault]] = {}
    for fault in faults:
        rows.setdefault((fault.process, fault.action), []).append(fault)
    lines = [f"{'SERVICE':<28}{'ACTION':<10}{'TIMES':>6}{'LONGEST RECOVERY':>18}{'LOST':>6}"]
    for (process, action), group in sorted(rows.items()):
        times = [f.recovered_s for f in group if f.recovered_s is not None]
        longest = f"{max(times):.1f}s" if times else "-"
        lines.append(f"{process:<28}{action:<10}{len(group):>6}{longest:>18}{counted.lost:>6}")
    lines += [f"  {f.at:.0f}s {f.action} {f.process}: {f.note}" for f in faults if f.note]
    lines.append(
        f"acknowledged {counted.acknowledged:,} users ({counted.messages:,} messages), rows "
        f"{counted.rows:,}, lost {counted.lost}, extra {counted.extra}, dead letters "
        f"{counted.dead_letters}, users of successful runs missing {counted.run_users_missing}; "
        f"everything ready and lag 0 {settled_s:.0f}s after the last fault"
    )
    return "\n".join(lines)


def chart(path: Path, timeline: dict[str, Any]) -> None:
    """The lag over the run, each fault a band from its start to its recovery."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = {"kill": "tab:red", "pause": "tab:orange", "restart": "tab:blue"}
    fig, ax = plt.subplots(figsize=(10, 4.5))
    samples = timeline["lag"]
    ax.plot([s["t"] for s in samples], [s["lag"] for s in samples], color="black", lw=1)
    top = max([s["lag"] or 0 for s in samples] + [1])
    for fault in timeline["faults"]:
        if fault["began"] is None:
            continue
        end = (fault["ended"] or fault["began"]) + (fault["recovered_s"] or 0)
        ax.axvspan(
            fault["began"], max(end, fault["began"] + 1), alpha=0.25, color=colours[fault["action"]]
        )
        ax.text(
            fault["began"],
            top * 0.98,
            f"{fault['action']} {fault['process']}",
            rotation=90,
            va="top",
            fontsize=7,
        )
    ax.set_xlabel("seconds")
    ax.set_ylabel("stream job lag (messages)")
    bands = [Patch(color=c, alpha=0.25, label=f"{a} (to ready again)") for a, c in colours.items()]
    ax.legend(handles=bands, loc="upper right", fontsize=8)
    ax.set_title(f"./run.sh chaos --minutes {timeline['minutes']} --seed {timeline['seed']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    settings = config.load()
    out = STATE / "chaos" / time.strftime("%Y%m%d-%H%M%S")
    say(f"seed {seed}: repeat with `./run.sh chaos --minutes {args.minutes} --seed {seed}`")
    stack.up()
    for service in (STREAM, STANDIN):
        stack.start_service(service)
    start = topic_end_offsets(settings)
    started = time.monotonic()
    nemesis = Nemesis(seed, args.minutes * 60, say)
    services = list({id(t.service): t.service for t in nemesis.pool}.values())
    driver = Driver(RATE * RUN_SECONDS, RATE, say)
    sampler = Sampler(settings, started)
    driving = threading.Thread(target=driver.run, daemon=True)
    sampler.thread.start()
    driving.start()
    say(
        f"{len(nemesis.plan)} faults planned over {args.minutes} min on {len(nemesis.pool)} "
        f"processes: {', '.join(t.process for t in nemesis.pool)}"
    )
    nemesis.run(started)
    time.sleep(max(0.0, args.minutes * 60 - (time.monotonic() - started)))
    nemesis.stop()
    driver.stop()
    last_fault = max([started, *(started + (f.ended or 0) for f in nemesis.faults)])
    say("faults over: waiting for the DAG run under way, every service and a lag of 0")
    driving.join()
    settled_s = settle(settings, services, last_fault)
    sampler.stop()
    counted = count(settings, start, topic_end_offsets(settings), driver.runs)
    runs_ok = driver.error is None and all(r.state in ("success", "failed") for r in driver.runs)
    timeline = {
        "seed": seed,
        "minutes": args.minutes,
        "faults": [f.as_dict() for f in nemesis.faults],
        "lag": sampler.samples,
        "runs": [vars(r) for r in driver.runs],
        "driver_error": driver.error,
        "count": counted.as_dict(),
        "settled_s": settled_s,
        "settled_in_promise": settled_s <= SETTLE_PROMISE,
        "ok": counted.ok and runs_ok,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline.json").write_text(json.dumps(timeline, indent=1))
    chart(out / "timeline.png", timeline)
    print()
    print(table(nemesis.faults, counted, settled_s))
    states = [r.state for r in driver.runs]
    print(
        f"DAG runs: {len(states)}, {states.count('success')} success, "
        f"{states.count('failed')} failed"
    )
    if driver.error:
        print(f"the driver stopped: {driver.error}")
    print(f"\nJSON: {out / 'timeline.json'}\nchart: {out / 'timeline.png'}")
    return 0 if timeline["ok"] else 1
