"""Configuration is read once, from the environment, and fails loudly naming the variable.

Every variable our code reads is declared in ``config.VARIABLES``, and ``load()`` reads each one
into its own field with the type the table gives it.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import config

REPO = Path(__file__).resolve().parents[1]
# Our code that runs the pipeline or the local stack (not tests/, which set variables for it).
OUR_CODE = [REPO / "spark_stream.py", *(REPO / d for d in ("pipeline", "dags", "script"))]


def _mentions_environ(node: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Attribute) and n.attr == "environ")
        or (isinstance(n, ast.Name) and n.id == "environ")
        for n in ast.walk(node)
    )


def _name(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def environment_reads(tree: ast.AST) -> set[str]:
    """Names read by ``os.environ.get/setdefault/pop("X")``, ``os.environ["X"]``, ``getenv``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr in ("get", "setdefault", "pop") and _mentions_environ(func.value):
                names.add(_name(node.args[0]))
            elif func.attr == "getenv":
                names.add(_name(node.args[0]))
        elif isinstance(node, ast.Subscript) and _mentions_environ(node.value):
            if isinstance(node.ctx, ast.Load):
                names.add(_name(node.slice))
    return names - {None}


def python_files() -> list[Path]:
    return [f for p in OUR_CODE for f in ([p] if p.is_file() else sorted(p.rglob("*.py")))]


def test_the_scan_finds_every_way_of_reading_the_environment() -> None:
    code = 'os.environ.get("A"); (env or os.environ).get("B", "1"); os.environ["C"]; os.getenv("D")'
    assert environment_reads(ast.parse(code)) == {"A", "B", "C", "D"}
    assert environment_reads(ast.parse('os.environ["E"] = "1"; env.get("F")')) == set()


def test_every_variable_our_code_reads_is_declared_in_the_table() -> None:
    undeclared = {}
    for path in python_files():
        for name in environment_reads(ast.parse(path.read_text(encoding="utf-8"))):
            if name not in config.BY_NAME:
                undeclared.setdefault(name, []).append(str(path.relative_to(REPO)))
    shell = (REPO / "run.sh").read_text(encoding="utf-8")
    for name in re.findall(r"\$\{([A-Z][A-Z0-9_]*):?-", shell):
        if name not in config.BY_NAME:
            undeclared.setdefault(name, []).append("run.sh")
    assert not undeclared, f"declare these in pipeline/config.py's VARIABLES: {undeclared}"


class RecordingEnv(dict):
    """An environment that remembers every name looked up in it."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def get(self, name, default=None):
        self.read.add(name)
        return super().get(name, default)


def test_load_reads_every_variable_of_the_table_and_no_other() -> None:
    env = RecordingEnv()
    config.load(env)
    assert env.read == set(config.BY_NAME)


def leaves(settings: config.Settings) -> dict[str, object]:
    """Every field of every section, as {"section.field": value}."""
    return {
        f"{section.name}.{f.name}": getattr(getattr(settings, section.name), f.name)
        for section in dataclasses.fields(settings)
        for f in dataclasses.fields(getattr(settings, section.name))
    }


# A valid value other than the default, and what load() makes of it, per kind.
PROBES = {
    config.TEXT: ("probe-value", "probe-value"),
    config.WHOLE: ("4321", 4321),
    config.NUMBER: ("12.5", 12.5),
    config.MEMORY: ("3g", "3g"),
    config.URL: ("http://probe:1/api/", "http://probe:1/api/"),
    config.CQL_NAME: ("probe_name", "probe_name"),
}


def test_each_variable_sets_a_field_of_its_own_with_the_type_of_the_table() -> None:
    """Defaults parse; a value of a variable's kind lands, converted, in exactly one field."""
    defaults = leaves(config.load({}))
    owner: dict[str, str] = {}
    for variable in config.VARIABLES:
        if variable.name in ("STACK_STATE_DIR", "STACK_TOPOLOGY"):  # moves many: see below
            continue
        raw, parsed = PROBES[variable.kind]
        if variable.choices:  # another choice, in the other case: read as the table spells it
            parsed = next(c for c in variable.choices if c != variable.default)
            raw = parsed.swapcase()
        changed = {
            key: value
            for key, value in leaves(config.load({variable.name: raw})).items()
            if value != defaults[key]
        }
        assert list(changed.values()) == [parsed], (variable.name, changed)
        (key,) = changed
        assert key not in owner, f"{variable.name} and {owner[key]} both set {key}"
        owner[key] = variable.name
        assert type(defaults[key]) is type(parsed), (variable.name, defaults[key])


def test_a_value_that_breaks_its_rule_is_refused_naming_the_variable_and_the_rule() -> None:
    for variable in config.VARIABLES:
        if variable.kind == config.TEXT and not variable.choices:
            continue
        needed = re.escape(f"{config.rule(variable)} is needed")
        with pytest.raises(config.ConfigError, match=f"^{variable.name}='lots of': {needed}$"):
            config.load({variable.name: "lots of"})
        if variable.kind == config.WHOLE and variable.minimum > 0:
            with pytest.raises(config.ConfigError, match=f"^{variable.name}='0': a whole number"):
                config.load({variable.name: "0"})


def test_a_rule_says_what_is_allowed_in_words() -> None:
    by_name = config.BY_NAME
    assert config.rule(by_name["USERS_TOTAL"]) == "a whole number >= 0"
    assert config.rule(by_name["USERS_PER_REQUEST"]) == "a whole number from 1 to 5000"
    assert config.rule(by_name["AIRFLOW_PORT"]) == "a whole number from 1 to 65535"
    assert config.rule(by_name["KAFKA_COMPRESSION"]) == "one of none, gzip, lz4, snappy, zstd"
    assert config.rule(by_name["USERS_API_URL"]) == "an http:// or https:// URL"
    for bad in ("randomuser.me/api/", "ftp://host/", "http://"):
        with pytest.raises(config.ConfigError, match="^USERS_API_URL="):
            config.load({"USERS_API_URL": bad})


def test_the_cluster_topology_changes_exactly_the_defaults_marked_cluster(tmp_path: Path) -> None:
    state = {"STACK_STATE_DIR": str(tmp_path)}
    single = leaves(config.load({**state, "STACK_TOPOLOGY": "single"}))
    cluster = leaves(config.load({**state, "STACK_TOPOLOGY": "cluster"}))
    changed = {key for key in single if single[key] != cluster[key]} - {"stack.topology"}
    marked = [v for v in config.VARIABLES if v.cluster is not None]
    assert len(changed) == len(marked) > 0
    s = config.load({**state, "STACK_TOPOLOGY": "cluster"})
    assert len(s.cassandra.hosts) == len(s.kafka.brokers) == len(config.CLUSTER_HOSTS) == 3
    assert s.cassandra.replication_factor == s.kafka.replication_factor == 3
    assert s.kafka.min_insync_replicas == 2 and s.stream.master.startswith("spark://")
    # A value set wins over either default.
    mine = config.load({**state, "STACK_TOPOLOGY": "cluster", "KAFKA_REPLICATION_FACTOR": "2"})
    assert mine.kafka.replication_factor == 2


def test_the_topology_of_the_last_up_holds_until_one_is_set(tmp_path: Path) -> None:
    state = {"STACK_STATE_DIR": str(tmp_path)}
    assert config.load(state).stack.topology == "single"
    record = config.topology_record(state)
    record.parent.mkdir(parents=True)
    record.write_text("cluster\n")
    assert config.load(state).cassandra.replication_factor == 3
    assert config.load({**state, "STACK_TOPOLOGY": "single"}).cassandra.replication_factor == 1
    with pytest.raises(
        config.ConfigError, match="^STACK_TOPOLOGY=.ring.: one of single, cluster is"
    ):
        config.load({**state, "STACK_TOPOLOGY": "ring"})


def test_paths_follow_the_state_dir_unless_set(tmp_path: Path) -> None:
    s = config.load({"STACK_STATE_DIR": str(tmp_path)})
    assert s.stack.state_dir == tmp_path
    assert Path(s.stream.checkpoint_dir) == tmp_path / "data" / "spark" / "checkpoint"
    assert Path(s.stream.jars_dir) == tmp_path / "jars" / "spark"
    own = config.load({"STACK_STATE_DIR": str(tmp_path), "SPARK_CHECKPOINT_DIR": "/elsewhere"})
    assert own.stream.checkpoint_dir == "/elsewhere"
    assert config.load({}).stack.state_dir == REPO / ".stack"


def test_the_stack_tooling_takes_its_state_dir_from_the_config(tmp_path: Path) -> None:
    """script/layout.py and run.sh put the stack's files where the config says."""
    env = {**os.environ, "STACK_STATE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    shown = subprocess.run(
        [sys.executable, "-c", "from script import layout; print(layout.STATE, layout.DATA)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown == [str(tmp_path), str(tmp_path / "data")]
    run_sh = re.search(r'"\$\{STACK_STATE_DIR:-([^}]*)\}"', (REPO / "run.sh").read_text())
    assert run_sh.group(1).replace("$repo", "{repo}") == config.BY_NAME["STACK_STATE_DIR"].default


def test_no_password_shows_in_a_repr() -> None:
    secrets = {v.name: f"s3cret-{v.name}" for v in config.VARIABLES if "PASSWORD" in v.name}
    assert len(secrets) >= 3  # Cassandra's, PostgreSQL's, Airflow's admin
    shown = repr(config.load(secrets))
    assert not [value for value in secrets.values() if value in shown]


def test_the_stream_jobs_help_lists_the_variables_it_reads_from_the_table() -> None:
    help_text = subprocess.run(
        [sys.executable, str(REPO / "spark_stream.py"), "--help"],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = re.findall(r"^  ([A-Z][A-Z0-9_]+)='([^']*)'$", help_text, flags=re.M)
    job = [v for v in config.VARIABLES if config.STREAM_JOB in v.read_by]
    assert listed == [(v.name, config.shown_default(v)) for v in job]
    assert {"CASSANDRA_HOST", "SPARK_CHECKPOINT_DIR", "KAFKA_TOPIC"} <= {v.name for v in job}
    launch = help_text.rsplit("starts the job:", 1)[1]
    assert re.findall(r"SPARK_\w+", launch) == [
        v.name for v in config.VARIABLES if config.SUBMIT in v.read_by
    ]


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(config.ConfigError, match="USERS_TOTAL='many'"):
        config.load({"USERS_TOTAL": "many"})
    with pytest.raises(
        config.ConfigError, match="USERS_PER_REQUEST=.6000.: a whole number from 1 to"
    ):
        config.load({"USERS_PER_REQUEST": "6000"})


def test_run_params_override_the_environment_for_one_run() -> None:
    env = {"USERS_API_URL": "http://env/api/", "KAFKA_TOPIC": "from-env"}
    s = config.load_for_run({"api_url": "http://param/api/", "total": 42, "seed": ""}, env)
    assert (s.api.url, s.api.total, s.api.seed) == ("http://param/api/", 42, "")
    assert s.kafka.topic == "from-env"
    with pytest.raises(config.ConfigError, match="unknown run parameter 'colour'"):
        config.load_for_run({"colour": "red"}, env)


def test_runs_are_paced_by_default_and_0_means_unpaced() -> None:
    assert config.load({}).api.per_second == float(config.DEFAULTS["USERS_PER_SECOND"]) > 0
    assert config.load({"USERS_PER_SECOND": "0"}).api.per_second == 0
    assert config.load({"USERS_PER_SECOND": "12.5"}).api.per_second == 12.5
    for bad in ("-1", "nan", "inf", "fast"):
        with pytest.raises(config.ConfigError, match="USERS_PER_SECOND"):
            config.load({"USERS_PER_SECOND": bad})


def test_the_users_per_second_run_param_overrides_the_environment_for_one_run() -> None:
    env = {"USERS_PER_SECOND": "5000"}
    assert config.load_for_run({"users_per_second": 300}, env).api.per_second == 300
    assert config.load_for_run({"users_per_second": 0}, env).api.per_second == 0  # unpaced
    assert config.load_for_run({"users_per_second": None}, env).api.per_second == 5000
    assert config.load_for_run({}, env).api.per_second == 5000


def test_compression_is_lz4_by_default_and_must_be_a_codec_kafka_knows() -> None:
    assert config.load({}).kafka.compression == "lz4"
    assert config.load({"KAFKA_COMPRESSION": "GZIP"}).kafka.compression == "gzip"
    assert config.load({"KAFKA_COMPRESSION": "none"}).kafka.compression == "none"
    with pytest.raises(
        config.ConfigError, match="KAFKA_COMPRESSION='brotli': one of none, gzip, lz4"
    ):
        config.load({"KAFKA_COMPRESSION": "brotli"})


def test_the_in_flight_bound_is_at_least_one_record() -> None:
    assert config.load({}).kafka.max_in_flight_records == 20000
    with pytest.raises(
        config.ConfigError, match="KAFKA_MAX_IN_FLIGHT_RECORDS='0': a whole number >= 1 is needed"
    ):
        config.load({"KAFKA_MAX_IN_FLIGHT_RECORDS": "0"})


def test_requirements_pin_the_versions_of_stack_versions_env() -> None:
    """Spark and Airflow are pinned once: the wheel versions equal stack/versions.env."""
    from script.layout import REPO, versions

    pinned = versions()
    requirements = (REPO / "requirements.txt").read_text()
    assert f"pyspark=={pinned['SPARK_VERSION']}\n" in requirements
    assert f"apache-airflow[postgres]=={pinned['AIRFLOW_VERSION']}\n" in requirements
    import pyspark

    assert pyspark.__version__ == pinned["SPARK_VERSION"]


def test_a_compatibility_mode_weaker_than_backward_is_refused() -> None:
    """The stream job must read records written with an older schema: NONE or FORWARD is not
    enough, and the message names the variable."""
    for weak in ("NONE", "FORWARD"):
        with pytest.raises(config.ConfigError, match="SCHEMA_COMPATIBILITY"):
            config.load({"SCHEMA_COMPATIBILITY": weak})
