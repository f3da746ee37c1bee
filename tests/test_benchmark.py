"""The benchmark's pure helpers: summaries, latency figures, lag verdicts, the rate search, the
load generator's records and the JSON document. The figures themselves are printed by
`./run.sh bench`, never asserted here."""

from __future__ import annotations

import json
import select
import subprocess
import sys

from pipeline import contract
from script.benchmark import report, stats
from script.harness import loadgen


def test_summary_prints_median_min_and_max_over_runs() -> None:
    summary = stats.Summary.of([3.0, 1.0, 2.0])
    assert (summary.median, summary.low, summary.high, summary.runs) == (2.0, 1.0, 3.0, 3)
    assert summary.text() == "2 (1..3) over 3 runs"
    assert stats.Summary.of([1234.5]).text(1) == "1,234.5 (1,234.5..1,234.5) over 1 run"


def test_latency_figures_are_nearest_rank_percentiles_in_seconds() -> None:
    figures = stats.latency_figures([float(ms) for ms in range(1001)])  # 0..1000 ms
    assert figures == {"p50": 0.5, "p95": 0.95, "p99": 0.99, "max": 1.0}


def test_per_second_buckets_latency_by_produce_second_and_writes_by_write_second() -> None:
    start = 10_000
    rows = [
        (10_000, 10_200_000),  # sent second 0, written second 0, 200 ms
        (10_500, 11_900_000),  # sent second 0, written second 1, 1400 ms
        (11_000, 13_000_000),  # sent second 1, written second 3 (after the window)
    ]
    series = stats.per_second(rows, start, 2)
    assert series["p50"] == [0.2, 2.0]
    assert series["p99"] == [1.4, 2.0]
    assert series["written"] == [1, 1, 0, 1]


def test_a_windows_lead_in_is_what_was_sent_before_its_figures_start() -> None:
    sent_latencies = [(9_000, 1_000.0), (9_999, 800.0), (10_000, 120.0), (12_500, 90.0)]
    lead_in, measured = stats.split_lead_in(sent_latencies, 10_000)
    assert lead_in == [1_000.0, 800.0]
    assert measured == [120.0, 90.0]
    assert stats.latency_figures(measured)["p99"] == 0.12


def test_per_second_leaves_seconds_without_rows_empty() -> None:
    assert stats.per_second([], 0, 2) == {
        "p50": [None, None],
        "p99": [None, None],
        "written": [0, 0],
    }


def test_a_lag_that_breathes_is_not_falling_behind_but_a_growing_one_is() -> None:
    breathing = [0, 2000, 2500, 100, 1900, 2600, 50, 2000, 2400]
    growing = [0, 2000, 2500, 1500, 3000, 4500, 3500, 5000, 6500]
    assert not stats.falling_behind(breathing, rate=1000)
    assert stats.falling_behind(growing, rate=1000)


def test_backlog_is_gone_from_the_first_sample_after_which_lag_stays_low() -> None:
    samples = [(0.0, 9000), (1.0, 500), (2.0, 4000), (3.0, 800), (4.0, 100)]
    assert stats.backlog_gone_at(samples, threshold=1000) == 3.0
    assert stats.backlog_gone_at([*samples, (5.0, 2000)], threshold=1000) is None


def run_search(search: stats.RateSearch, capacity: float) -> list[float]:
    tried = []
    while (rate := search.next_rate()) is not None:
        tried.append(rate)
        search.record(rate, rate <= capacity)
    return tried


def test_rate_search_steps_up_then_bisects_to_the_resolution() -> None:
    search = stats.RateSearch(step=2000, ceiling=16000, resolution=500)
    tried = run_search(search, capacity=5200)
    assert tried == [2000, 4000, 6000, 5000, 5500]
    assert search.passed == 5000 and search.failed == 5500 and not search.at_ceiling


def test_rate_search_below_the_first_step_bisects_down_from_it() -> None:
    search = stats.RateSearch(step=2000, ceiling=16000, resolution=500)
    assert run_search(search, capacity=700) == [2000, 1000, 500]
    assert search.passed == 500


def test_rate_search_stops_at_the_ceiling_when_everything_passes() -> None:
    search = stats.RateSearch(step=2000, ceiling=5000, resolution=500)
    assert run_search(search, capacity=1e9) == [2000, 4000, 5000]
    assert search.at_ceiling and search.passed == 5000


def test_load_generator_messages_are_valid_records_with_their_id_and_send_time() -> None:
    record = {f.name: f"{f.name} ü" for f in contract.FIELDS if f.kind == "string"}
    record["produced_at"] = 1
    template = loadgen.make_template(record)
    rid = loadgen.record_id("t1", 42)
    value = loadgen.message(template, rid, 1_700_000_000_123)
    decoded = json.loads(value)
    contract.validate(decoded)
    assert decoded["id"] == "t1-000000000042"
    assert decoded["produced_at"] == 1_700_000_000_123
    assert decoded["first_name"] == "first_name ü"


def test_load_generator_is_due_what_a_steady_rate_gives() -> None:
    assert [loadgen.due(1000, t) for t in (0, 0.0049, 0.5, 2)] == [0, 4, 500, 2000]


def test_results_document_carries_each_figure_with_its_runs() -> None:
    values = [10.0, 30.0, 20.0]
    figure = report.entry("sink_rows_per_s", "sink (rows/s)", values, stats.Summary.of(values))
    doc = report.document({"runs": 3}, [figure], {"sink": [{"rows_per_second": 10.0}]})
    again = json.loads(json.dumps(doc))
    assert again["settings"] == {"runs": 3}
    assert again["figures"] == [
        {
            "key": "sink_rows_per_s",
            "label": "sink (rows/s)",
            "values": [10.0, 30.0, 20.0],
            "median": 20.0,
            "min": 10.0,
            "max": 30.0,
            "runs": 3,
        }
    ]
    assert again["details"]["sink"][0]["rows_per_second"] == 10.0


def test_batch_medians_take_each_phase_over_the_batches_and_count_a_missing_phase_as_zero() -> None:
    timings = [
        {"latestOffset": 4, "addBatch": 100, "walCommit": 10, "numInputRows": 500},
        {"latestOffset": 6, "addBatch": 300, "walCommit": 30, "numInputRows": 700},
        {"latestOffset": 5, "addBatch": 200, "numInputRows": 600},
    ]
    medians = stats.batch_medians(timings)
    assert medians["latestOffset"] == 5
    assert medians["addBatch"] == 200
    assert medians["walCommit"] == 10  # 0, 10, 30
    assert medians["numInputRows"] == 600
    assert stats.batch_medians([]) == {}


def test_a_side_job_reads_batch_phases_from_sparks_progress_lines() -> None:
    """Spark's progress report, JSON over several lines after its marker, becomes one entry per
    batch that read messages; an idle report and one still being written are left out."""
    from script.harness.side import batch_phases
    from spark_stream import PROGRESS_MARKER

    def report(rows: int, phases: dict[str, int]) -> str:
        progress = {"batchId": 7, "numInputRows": rows, "durationMs": phases, "sources": []}
        return f"26/12/06 15:40:01 INFO MicroBatchExecution: {PROGRESS_MARKER}" + json.dumps(
            progress, indent=2
        )

    text = "\n".join(
        [
            "26/12/06 15:40:00 INFO spark_stream: batch 6: 480 rows in, 480 written",
            report(480, {"addBatch": 210, "walCommit": 12, "triggerExecution": 260}),
            report(0, {"latestOffset": 2, "triggerExecution": 2}),  # idle
            report(90, {"addBatch": 80, "triggerExecution": 95}),
            report(70, {"addBatch": 60})[:-20],  # cut short
        ]
    )
    assert batch_phases(text) == [
        {"addBatch": 210, "walCommit": 12, "triggerExecution": 260, "numInputRows": 480},
        {"addBatch": 80, "triggerExecution": 95, "numInputRows": 90},
    ]


def test_only_the_cost_part_has_its_side_job_log_batch_progress() -> None:
    """The jobs whose latency and rate the benchmark prints run with the user's job's
    settings; the cost part, which prints the phases, has Spark log them."""
    from pipeline import config
    from script.harness.side import SideJob

    user = config.load().stream.batch_timings
    assert user == "false"
    assert SideJob("latency").settings.stream.batch_timings == user
    assert SideJob("cost1000", timings=True).settings.stream.batch_timings == "true"


def test_the_cpu_meter_keeps_what_a_process_used_before_it_ended() -> None:
    """A child that burns CPU and exits between the meter's start and its end still counts (a
    tree's total would lose it, or go negative)."""
    from script.benchmark.memory import CpuMeter

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass"
    parent_code = (
        "import subprocess, sys, time\n"
        "sys.stdin.readline()\n"
        f"subprocess.run([sys.executable, '-c', {burn!r}])\n"
        "print('done', flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        meter = CpuMeter({"tree": parent.pid})
        assert parent.stdin is not None and parent.stdout is not None
        parent.stdin.write("go\n")
        parent.stdin.flush()
        while not _has_line(parent):  # sampled while the child burns, until the parent says
            meter.sample()
    finally:
        parent.kill()
        parent.wait()
    assert meter.used()["tree"] >= 0.5


def _has_line(process: subprocess.Popen) -> bool:
    """Whether ``process`` has written a line (waits 50 ms at most)."""
    return bool(select.select([process.stdout], [], [], 0.05)[0])
