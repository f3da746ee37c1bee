"""The jar list for ``spark-submit --jars`` leaves out what Spark already bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import spark_jars


@pytest.mark.parametrize(
    ("file_name", "artifact"),
    [
        ("kafka-clients-3.4.1.jar", "kafka-clients"),
        ("spark-sql-kafka-0-10_2.12-3.5.7.jar", "spark-sql-kafka-0-10_2.12"),
        ("spark-cassandra-connector_2.13-3.5.1.jar", "spark-cassandra-connector_2.13"),
        ("java-driver-shaded-guava-25.1-jre-graal-sub-1.jar", "java-driver-shaded-guava"),
        ("scala-library-2.12.19.jar", "scala-library"),
        ("commons-pool2-2.11.1.jar", "commons-pool2"),
        ("jsr305-3.0.0.jar", "jsr305"),
    ],
)
def test_artifact_name_strips_the_version(file_name: str, artifact: str) -> None:
    assert spark_jars.artifact_name(file_name) == artifact


def test_jars_spark_bundles_in_another_version_are_left_out(tmp_path: Path) -> None:
    for name in (
        "spark-sql-kafka-0-10_2.12-3.5.7.jar",
        "kafka-clients-3.4.1.jar",
        "scala-library-2.12.19.jar",
        "slf4j-api-1.7.36.jar",
        "commons-pool2-2.11.1.jar",
        "notes.txt",
    ):
        (tmp_path / name).write_text("")
    bundled = ["scala-library-2.12.18.jar", "slf4j-api-2.0.7.jar", "commons-pool-1.5.4.jar"]

    jars = spark_jars.connector_jars(tmp_path, bundled)

    assert [jar.name for jar in jars] == [
        "commons-pool2-2.11.1.jar",
        "kafka-clients-3.4.1.jar",
        "spark-sql-kafka-0-10_2.12-3.5.7.jar",
    ]


def test_a_missing_jar_folder_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(spark_jars.JarsNotFound, match="SPARK_JARS_DIR"):
        spark_jars.connector_jars(tmp_path / "absent", [])
