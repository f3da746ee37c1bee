"""The benchmark's output: printed figures, one JSON document and one PNG chart."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from script.benchmark.stats import Summary

LABEL_WIDTH = 56


@dataclass
class Figures:
    """The figures measured so far, each printed once as ``median (min..max) over N runs``."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def add(self, key: str, label: str, values: list[float], digits: int = 0) -> Summary:
        summary = Summary.of(values)
        self.entries.append(entry(key, label, values, summary))
        print(f"  {label:<{LABEL_WIDTH}}{summary.text(digits)}", flush=True)
        return summary

    def add_each(
        self, key: str, unit: str, samples: list[dict[str, float]], total: str, digits: int = 0
    ) -> None:
        """One figure per name over ``samples`` (one dict of name -> value per run; the side
        stream job, when there, last), then their sum per run labelled ``total``."""
        names = sorted({n for s in samples for n in s}, key=lambda n: (n == "side stream job", n))
        for name in names:
            values = [s[name] for s in samples if name in s]
            self.add(f"{key}_{name}", f"{name} ({unit})", values, digits)
        self.add(f"{key}_total", f"{total} ({unit})", [sum(s.values()) for s in samples], digits)

    def medians(self) -> dict[str, float]:
        """Each figure's median so far, by key."""
        return {e["key"]: e["median"] for e in self.entries}

    def note(self, text: str) -> None:
        print(f"  {text}", flush=True)


def entry(key: str, label: str, values: list[float], summary: Summary) -> dict[str, Any]:
    """One figure of the JSON document."""
    return {"key": key, "label": label, "values": list(values), **summary.as_dict()}


def document(
    settings: dict[str, Any], figures: list[dict[str, Any]], details: dict[str, Any]
) -> dict[str, Any]:
    """The JSON document: when, where, with which settings, the figures, and each run's data."""
    return {
        "benchmark": "./run.sh bench",
        "cores": os.cpu_count(),
        "settings": settings,
        "figures": figures,
        "details": details,
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")


def write_chart(path: Path, details: dict[str, Any], rate: float) -> bool:
    """The 1,000 users/s run (latency per second, offered vs written) and the rate searches.

    Returns False (and writes nothing) when neither part was measured.
    """
    latency_runs = [r for r in details.get("latency", []) if r.get("per_second")]
    searches = details.get("rate_search", [])
    if not latency_runs and not searches:
        return False
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 12))
    lat, flow, steps = axes
    for i, run in enumerate(latency_runs, 1):
        series = run["per_second"]
        seconds = range(len(series["p50"]))
        lat.plot(seconds, series["p50"], label=f"p50, run {i}")
        lat.plot(seconds, series["p99"], linestyle="--", label=f"p99, run {i}")
        flow.plot(
            range(len(run["offered_per_second"])),
            run["offered_per_second"],
            label=f"offered, run {i}",
        )
        written = series["written"]
        flow.plot(range(len(written)), written, linestyle="--", label=f"written, run {i}")
    lat.set(
        title=f"End-to-end latency at {rate:,.0f} users/s, by produce second",
        xlabel="second of the window",
        ylabel="latency (s)",
    )
    flow.set(
        title="Offered vs written users per second", xlabel="second of the window", ylabel="users/s"
    )
    for i, search in enumerate(searches, 1):
        tried = search["steps"]
        xs = range(1, len(tried) + 1)
        steps.plot(xs, [s["rate"] for s in tried], color="grey", linewidth=0.8)
        for x, s in zip(xs, tried, strict=True):
            steps.scatter(x, s["rate"], color="tab:green" if s["passed"] else "tab:red", zorder=3)
            if s.get("p99") is not None:
                steps.annotate(
                    f"{s['p99']:.1f}s",
                    (x, s["rate"]),
                    textcoords="offset points",
                    xytext=(4, 4),
                    fontsize=7,
                )
        steps.axhline(search["sustainable"], linestyle=":", label=f"sustainable, run {i}")
    steps.set(
        title="Rate search (green: p99 within limit and keeping up; red: not)",
        xlabel="step",
        ylabel="offered users/s",
    )
    for ax in axes:
        if not ax.has_data():
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
