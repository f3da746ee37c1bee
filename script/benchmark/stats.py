"""Pure arithmetic of the benchmark: summaries over runs, latency figures, lag, the rate search."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from script.pipeline_status import percentile

__all__ = [
    "RateSearch",
    "Summary",
    "backlog_gone_at",
    "falling_behind",
    "latency_figures",
    "per_second",
    "percentile",
    "split_lead_in",
]


@dataclass(frozen=True)
class Summary:
    """One figure over several runs: median, min and max."""

    median: float
    low: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("a summary needs at least one run")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def as_dict(self) -> dict[str, float | int]:
        return {"median": self.median, "min": self.low, "max": self.high, "runs": self.runs}

    def text(self, digits: int = 0) -> str:
        """``median (min..max) over N runs``, thousands separated."""
        f = f"{{:,.{digits}f}}"
        return (
            f"{f.format(self.median)} ({f.format(self.low)}..{f.format(self.high)})"
            f" over {self.runs} run{'s' if self.runs != 1 else ''}"
        )


def latency_figures(latencies_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max of latencies in milliseconds, as seconds."""
    if not latencies_ms:
        raise ValueError("no latencies: no row of the window reached Cassandra")
    ordered = sorted(latencies_ms)
    return {
        "p50": percentile(ordered, 0.50) / 1000,
        "p95": percentile(ordered, 0.95) / 1000,
        "p99": percentile(ordered, 0.99) / 1000,
        "max": ordered[-1] / 1000,
    }


def split_lead_in(
    sent_latencies: Iterable[tuple[int, float]], measured_from_ms: int
) -> tuple[list[float], list[float]]:
    """(latencies of the lead-in, latencies of the window) of ``(sent ms, latency ms)`` pairs:
    what was sent before ``measured_from_ms`` is the lead-in, the rest is measured.

    A window's load starts after the previous load has been read, so its first users meet an
    idle query that looks at Kafka once a second (``SPARK_IDLE_POLL_MS``); the lead-in lets the
    load flow before the figures start, so they are the steady rate's.
    """
    lead_in: list[float] = []
    measured: list[float] = []
    for sent, latency in sent_latencies:
        (lead_in if sent < measured_from_ms else measured).append(latency)
    return lead_in, measured


def per_second(
    rows: Iterable[tuple[int, int]], start_ms: int, seconds: int
) -> dict[str, list[float | None]]:
    """Per second of a window: latency p50/p99 (by produce second) and rows written per second.

    ``rows`` are (produced_at ms, Cassandra write time µs); the window starts at ``start_ms``
    and lasts ``seconds``. A second with no row produced in it has ``None`` latencies; the
    written counts go on past the window until the last row was written (the catch-up).
    """
    latencies: list[list[float]] = [[] for _ in range(seconds)]
    written: list[float] = [0.0] * seconds
    for produced, written_us in rows:
        sent_second = (produced - start_ms) // 1000
        if 0 <= sent_second < seconds:
            latencies[sent_second].append(written_us / 1000 - produced)
        write_second = (written_us // 1000 - start_ms) // 1000
        if write_second >= 0:
            written.extend([0.0] * (write_second + 1 - len(written)))
            written[write_second] += 1
    return {
        "p50": [percentile(s, 0.5) / 1000 if s else None for s in latencies],
        "p99": [percentile(s, 0.99) / 1000 if s else None for s in latencies],
        "written": written,
    }


def falling_behind(lags: Sequence[int], rate: float, slack_seconds: float = 2.0) -> bool:
    """Whether the lag samples of a window grow: the job does not keep up with ``rate``.

    The lag breathes with every trigger (it rises until a batch commits), so this compares the
    lowest lag of the last third of the samples with the lowest of the first third: more than
    ``slack_seconds`` of offered records more is falling behind.
    """
    if len(lags) < 3:
        return False
    third = len(lags) // 3
    return min(lags[-third:]) - min(lags[:third]) > rate * slack_seconds


def backlog_gone_at(samples: Sequence[tuple[float, int]], threshold: int) -> float | None:
    """The first time of (time, lag) samples from which the lag stays at or below ``threshold``.

    None when the last sample is still above it.
    """
    gone: float | None = None
    for at, lag in samples:
        if lag <= threshold:
            if gone is None:
                gone = at
        else:
            gone = None
    return gone


@dataclass
class RateSearch:
    """The highest passing rate: step up until a rate fails, then bisect to ``resolution``.

    ``next_rate()`` says what to try (None: done); ``record(rate, passed)`` gives the verdict.
    A pass at ``ceiling`` ends the search: the answer is then "at least the ceiling".
    """

    step: float = 2000
    ceiling: float = 16000
    resolution: float = 500
    passed: float = 0.0  # highest rate that passed (0: none yet)
    failed: float | None = None  # lowest rate that failed
    tried: list[tuple[float, bool]] = field(default_factory=list)

    def next_rate(self) -> float | None:
        if self.failed is None:
            if self.passed >= self.ceiling:
                return None
            return min(self.ceiling, self.passed + self.step) if self.passed else self.step
        if self.failed - self.passed <= self.resolution:
            return None
        middle = (self.passed + self.failed) / 2
        # Round to the resolution so the rates tried read well (1,000s, 500s).
        rounded = round(middle / self.resolution) * self.resolution
        if not self.passed < rounded < self.failed:
            return None
        return rounded

    def record(self, rate: float, passed: bool) -> None:
        self.tried.append((rate, passed))
        if passed:
            self.passed = max(self.passed, rate)
        else:
            self.failed = rate if self.failed is None else min(self.failed, rate)

    @property
    def at_ceiling(self) -> bool:
        return self.failed is None and self.passed >= self.ceiling


# Phases of a micro-batch, in Spark's query progress (durationMs), in the order they run; then
# the whole batch and its messages.
PHASES = ("latestOffset", "queryPlanning", "addBatch", "walCommit", "commitOffsets")
BATCH_FIGURES = (*PHASES, "triggerExecution", "numInputRows")


def batch_medians(timings: list[dict[str, int]]) -> dict[str, float]:
    """The median of each of ``BATCH_FIGURES`` over a run's batches (a phase a batch did not
    report counts as 0 ms); empty when no batch read messages."""
    if not timings:
        return {}
    return {name: statistics.median(t.get(name, 0) for t in timings) for name in BATCH_FIGURES}
