"""Configuration is read once, from the environment, and fails loudly naming the variable."""

from __future__ import annotations

import pytest

from pipeline import config


def test_defaults_are_the_local_stack() -> None:
    s = config.load({})
    assert s.kafka.bootstrap_servers == "localhost:9092"
    assert (s.kafka.topic, s.cassandra.keyspace, s.cassandra.table) == (
        "users_created",
        "spark_streams",
        "created_users",
    )
    assert (s.cassandra.username, s.cassandra.password) == ("cassandra", "cassandra")


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(config.ConfigError, match="USERS_TOTAL='many'"):
        config.load({"USERS_TOTAL": "many"})
    with pytest.raises(config.ConfigError, match="USERS_PER_REQUEST=6000"):
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
        config.ConfigError, match="KAFKA_COMPRESSION='brotli': use one of none, gzip, lz4"
    ):
        config.load({"KAFKA_COMPRESSION": "brotli"})


def test_the_in_flight_bound_is_at_least_one_record() -> None:
    assert config.load({}).kafka.max_in_flight_records == 20000
    with pytest.raises(
        config.ConfigError, match="KAFKA_MAX_IN_FLIGHT_RECORDS=0 must be at least 1"
    ):
        config.load({"KAFKA_MAX_IN_FLIGHT_RECORDS": "0"})


def test_the_password_never_shows_in_a_repr() -> None:
    s = config.load({"CASSANDRA_PASSWORD": "s3cret-value"})
    assert "s3cret-value" not in repr(s)


def test_requirements_pin_the_versions_of_stack_versions_env() -> None:
    """Spark and Airflow are pinned once: the wheel versions equal stack/versions.env."""
    from script.layout import REPO, versions

    pinned = versions()
    requirements = (REPO / "requirements.txt").read_text()
    assert f"pyspark=={pinned['SPARK_VERSION']}\n" in requirements
    assert f"apache-airflow[postgres]=={pinned['AIRFLOW_VERSION']}\n" in requirements
    import pyspark

    assert pyspark.__version__ == pinned["SPARK_VERSION"]
