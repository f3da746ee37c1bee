"""Bad input to `./run.sh` is refused before anything starts: one line naming the option (or the
setting), the value and what is allowed, exit status 2, and no pid file (nothing started).

Each case runs `python -m script` in an empty state folder of its own, with a Java that does
not exist, so that a check that let a value through could start nothing for real. No service
of the stack is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import config

REPO = Path(__file__).resolve().parents[1]


def refusal(tmp_path: Path, *args: str, **env: str) -> str:
    """The one line `./run.sh ARGS` refused with (exit 2, state folder left empty)."""
    state = tmp_path / "state"
    state.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "script", *args],
        cwd=REPO,
        env={
            **os.environ,
            "STACK_STATE_DIR": str(state),
            "JAVA_HOME": str(tmp_path / "no-java"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    assert not list(state.rglob("*.pid")), "a service was started"
    assert list(state.iterdir()) == [], "the state folder was written to"
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


RUN_OPTIONS = [
    (["--users", "-5"], "--users -5: a whole number >= 0 is needed (0: the DAG's time budget)"),
    (["--users", "many"], "--users many: a whole number >= 0 is needed (0: the DAG's time budget)"),
    (["--users-per-second", "-1"], "--users-per-second -1: a number >= 0 is needed (0: unpaced)"),
    (
        ["--users-per-second", "fast"],
        "--users-per-second fast: a number >= 0 is needed (0: unpaced)",
    ),
    (["--seed"], "argument --seed: expected one argument"),
    (["--offline=yes"], "argument --offline: ignored explicit argument 'yes'"),
    (["--colour"], "unrecognized arguments: --colour"),
]


@pytest.mark.parametrize(("args", "line"), RUN_OPTIONS, ids=[" ".join(a) for a, _ in RUN_OPTIONS])
def test_a_bad_run_option_is_refused_before_anything_starts(
    tmp_path: Path, args: list[str], line: str
) -> None:
    assert refusal(tmp_path, *args) == f"./run.sh: {line}"


def test_the_run_options_hold_the_rules_of_the_dag_params_they_set() -> None:
    """--users sets `total` (USERS_TOTAL), --users-per-second `users_per_second`: the refusal
    words are those variables' rules, the same the DAG's Params are made of."""
    assert config.rule(config.BY_NAME[config.RUN_PARAMS["total"]]) == "a whole number >= 0"
    rate = config.BY_NAME[config.RUN_PARAMS["users_per_second"]]
    assert config.rule(rate) == "a number >= 0"
    assert config.param_schema("users_per_second", None)["minimum"] == rate.minimum


def test_offline_with_another_users_api_url_is_refused(tmp_path: Path) -> None:
    line = refusal(tmp_path, "--offline", USERS_API_URL="http://elsewhere.invalid/api/")
    assert line.startswith(
        "./run.sh: --offline with USERS_API_URL=http://elsewhere.invalid/api/: either, not both"
    )
    assert "unset USERS_API_URL or drop --offline" in line


COMMANDS = [
    (["up", "nonsense"], "./run.sh up: nonsense: one of postgres, zookeeper, kafka"),
    (["down", "nonsense"], "./run.sh down: nonsense: one of postgres, zookeeper, kafka"),
    (["stream", "go"], "./run.sh stream: argument action: invalid choice: 'go'"),
    (["clean", "--everything"], "./run.sh: unrecognized arguments: --everything"),
]


@pytest.mark.parametrize(("args", "start"), COMMANDS, ids=[" ".join(a) for a, _ in COMMANDS])
def test_a_bad_command_argument_is_refused_before_anything_starts(
    tmp_path: Path, args: list[str], start: str
) -> None:
    assert refusal(tmp_path, *args).startswith(start)


BENCH_OPTIONS = [
    ("--runs", "0", "a whole number >= 1"),
    ("--rate", "0", "a number >= 1"),
    ("--seconds", "0.5", "a number >= 1"),
    ("--search-seconds", "none", "a number >= 1"),
    ("--warm-seconds", "-1", "a number >= 0"),
    ("--p99-limit", "-0.5", "a number >= 0"),
    ("--rate-step", "0", "a number >= 1"),
    ("--rate-ceiling", "lots", "a number >= 1"),
    ("--rate-resolution", "0", "a number >= 1"),
    ("--classify-messages", "1.5", "a whole number >= 1"),
    ("--sink-messages", "0", "a whole number >= 1"),
    ("--users", "-1", "a whole number >= 1"),
    ("--cost-rates", "1000,0", "a number >= 1"),
]


@pytest.mark.parametrize(
    ("option", "bad", "allowed"), BENCH_OPTIONS, ids=[o for o, *_ in BENCH_OPTIONS]
)
def test_a_bad_bench_option_is_refused_before_anything_starts(
    tmp_path: Path, option: str, bad: str, allowed: str
) -> None:
    line = refusal(tmp_path, "bench", option, bad)
    assert line == f"./run.sh bench: {option} {bad}: {allowed} is needed"


def test_unknown_bench_parts_are_refused_naming_the_known(tmp_path: Path) -> None:
    line = refusal(tmp_path, "bench", "--parts", "latency,speed")
    assert line.startswith("./run.sh bench: --parts latency,speed: a comma-separated list of ")
    assert line.endswith(
        "latency, cost, rate, classify, sink, producer, restart, memory, fetch is needed"
    )


def test_unknown_fault_scenarios_and_a_flag_with_a_value_are_refused(tmp_path: Path) -> None:
    line = refusal(tmp_path, "faults", "--scenarios", "kill,flood")
    assert line.startswith(
        "./run.sh faults: --scenarios kill,flood: a comma-separated list of kill"
    )
    (tmp_path / "state").rmdir()
    line = refusal(tmp_path, "faults", "--short=yes")
    assert line == "./run.sh faults: argument --short: ignored explicit argument 'yes'"


def test_node_scenarios_on_one_node_of_each_are_refused_naming_the_fix(tmp_path: Path) -> None:
    line = refusal(tmp_path, "faults", "--scenarios", "kafka-broker", STACK_TOPOLOGY="single")
    assert line.startswith(
        "./run.sh faults: --scenarios kafka-broker: the node scenarios need the cluster topology"
    )
    assert line.endswith("STACK_TOPOLOGY=cluster ./run.sh up`")


RULED = [v for v in config.VARIABLES if v.kind != config.TEXT or v.choices]


@pytest.mark.parametrize("variable", RULED, ids=[v.name for v in RULED])
def test_a_bad_setting_is_refused_before_anything_starts(
    tmp_path: Path, variable: config.Variable
) -> None:
    line = refusal(tmp_path, **{variable.name: "lots of"})
    assert line == f"./run.sh: {variable.name}='lots of': {config.rule(variable)} is needed"


def test_a_setting_out_of_its_bounds_is_refused_for_every_command(tmp_path: Path) -> None:
    for command in ("up", "status", "bench", "faults"):
        (tmp_path / command).mkdir()
        line = refusal(tmp_path / command, command, USERS_PER_REQUEST="6000")
        assert line == "./run.sh: USERS_PER_REQUEST='6000': a whole number from 1 to 5000 is needed"


def test_the_admin_as_the_stream_jobs_login_is_refused_before_cassandra_starts(
    tmp_path: Path,
) -> None:
    line = refusal(tmp_path, "up", CASSANDRA_USERNAME="cassandra", CASSANDRA_ADMIN_USERNAME="")
    assert line == (
        "./run.sh: CASSANDRA_USERNAME='cassandra' is the admin login: give the stream job a role "
        "of its own (default pipeline_writer), set-up grants it only read and write"
    )


def test_a_run_with_nothing_to_bound_it_is_refused_before_anything_starts(tmp_path: Path) -> None:
    line = refusal(tmp_path, "--offline", USERS_TOTAL="0", USERS_RUN_SECONDS="0")
    assert (
        line == "./run.sh: USERS_TOTAL=0 and USERS_RUN_SECONDS=0: set one of them to bound the run"
    )


def test_a_chaos_run_of_no_minutes_or_a_seed_not_a_number_is_refused(tmp_path: Path) -> None:
    line = refusal(tmp_path, "chaos", "--minutes", "0")
    assert line == "./run.sh chaos: --minutes 0: a whole number >= 1 is needed"
    (tmp_path / "state").rmdir()
    line = refusal(tmp_path, "chaos", "--seed", "abc")
    assert line == "./run.sh chaos: --seed abc: a whole number >= 0 is needed"
