"""`./run.sh --offline --users N --seed S`: the newcomer's command runs the pipeline and reports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from pipeline import config

REPO = Path(__file__).resolve().parents[1]


def test_the_runner_sends_users_through_the_pipeline_and_reports_them(
    kafka_bootstrap, cassandra_session, airflow_client
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "script", "--offline", "--users", "3000", "--seed", "runner-test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    report = out[out.index("Pipeline run report") :]
    assert re.search(r"fetched\s+3,000\n", report), report
    assert re.search(r"sent to Kafka\s+3,000\s+skipped 0\s+failed 0", report), report
    assert re.search(r"written\s+3,000 rows in spark_streams\.created_users", report), report
    assert re.search(r"latency median [\d.]+s, p95 [\d.]+s", report), report
    paced = re.search(r"rate\s+paced at ([\d,]+) users/s, reached ([\d,]+) \((\d+)%\)", report)
    assert paced, report
    asked, reached = (int(g.replace(",", "")) for g in paced.groups()[:2])
    assert asked == config.load().api.per_second and reached > 0
    assert re.search(r"lag\s+[\d,]+ messages behind when the sending ended", report), report
    port = config.load().monitor.port
    assert report.index(f"watch it live at http://localhost:{port}") < report.index("Airflow UI")
    ids = re.findall(r"^    ([0-9a-f-]{36})  ", report, flags=re.M)
    assert len(ids) == 3
    for user_id in ids:  # the sample rows are real rows
        row = cassandra_session.execute(
            "SELECT id FROM spark_streams.created_users WHERE id = %s", (user_id,)
        ).one()
        assert row is not None


def test_the_report_says_a_new_stacks_first_seconds_apart() -> None:
    from script.run_pipeline import WARMING_SECONDS, latency_line

    # 30 s of sending, 10 rows a second: the first WARMING_SECONDS' rows 0.9 s late, the rest 0.1 s.
    produced = [i * 100 for i in range(300)]
    latencies = [900.0 if t < WARMING_SECONDS * 1000 else 100.0 for t in produced]
    line = latency_line(produced, latencies)
    assert line.startswith("median 0.10s, p95 0.90s (produce -> Cassandra write)\n"), line
    assert line.endswith(f"first {WARMING_SECONDS} s of sending p95 0.90s, the rest p95 0.10s")
    # 15 s of sending: too short to say a part apart.
    assert latency_line(produced[:150], latencies[:150]) == (
        "median 0.90s, p95 0.90s (produce -> Cassandra write)"
    )
