"""Resolving jars once with Maven into .stack/jars: each service says which (`download`).

Kafka (broker and ZooKeeper), Cassandra, the schema registry's app and the Spark job's
connectors; a Spark job never
downloads anything at start-up.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from script.layout import JARS, REPO, STACK_CONF, StackError, say, versions

# --------------------------------------------------------------------------- downloads


def _mvn_copy(pom: Path, dest: Path, properties: dict[str, str], what: str) -> None:
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not on PATH: install it (apt-get install maven)")
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={tmp}",
    ]
    cmd += [f"-D{k}={v}" for k, v in properties.items()]
    say(f"resolving {what} with Maven (first run only) ...")
    started = time.monotonic()
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise StackError(f"Maven could not resolve {what}:\n{tail}")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    count = len(list(dest.glob("*.jar")))
    shown = dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest  # STACK_STATE_DIR
    say(f"  {count} jars in {shown} ({time.monotonic() - started:.0f}s)")


def _resolved(dest: Path, key: str) -> bool:
    marker = dest / ".resolved"
    return marker.exists() and marker.read_text() == key


def resolve_service_jars(
    name: str, group: str, artifact: str, version: str, pom: str = "jar.pom.xml"
) -> Path:
    """Resolve ``group:artifact:version`` with its runtime dependencies into .stack/jars/NAME."""
    dest = JARS / name
    key = f"{group}:{artifact}:{version} ({pom})"
    if not _resolved(dest, key):
        JARS.mkdir(parents=True, exist_ok=True)
        _mvn_copy(
            STACK_CONF / pom,
            dest,
            {"artifact.group": group, "artifact.id": artifact, "artifact.version": version},
            key,
        )
        (dest / ".resolved").write_text(key)
    return dest


def resolve_archive(name: str, coordinates: str) -> Path:
    """Unpack the archive ``group:artifact:version:type:classifier`` into .stack/jars/NAME, once."""
    dest = JARS / name
    if _resolved(dest, coordinates):
        return dest
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not on PATH: install it (apt-get install maven)")
    JARS.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    say(f"resolving {coordinates} with Maven (first run only) ...")
    started = time.monotonic()
    cmd = ["mvn", "-q", "-B", "dependency:unpack", f"-Dartifact={coordinates}"]
    tmp.mkdir()
    # Run from the target: without a project the plugin writes its "unpacked" marker under a
    # literal `${project.basedir}` folder of the working directory; removed below.
    result = subprocess.run(
        [*cmd, f"-DoutputDirectory={tmp}"], capture_output=True, text=True, cwd=tmp
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise StackError(f"Maven could not resolve {coordinates}:\n{tail}")
    shutil.rmtree(tmp / "${project.basedir}", ignore_errors=True)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    (dest / ".resolved").write_text(coordinates)
    say(f"  unpacked into {dest} ({time.monotonic() - started:.0f}s)")
    return dest


def resolve_spark_jars() -> Path:
    """Resolve the Spark job's connectors into .stack/jars/spark, minus jars pyspark bundles."""
    v = versions()
    dest = JARS / "spark"
    key = (
        f"spark-sql-kafka-0-10_{v['SCALA_BINARY_VERSION']}:{v['SPARK_VERSION']} "
        f"spark-cassandra-connector_{v['SCALA_BINARY_VERSION']}:"
        f"{v['SPARK_CASSANDRA_CONNECTOR_VERSION']}"
    )
    if _resolved(dest, key):
        return dest
    JARS.mkdir(parents=True, exist_ok=True)
    _mvn_copy(
        STACK_CONF / "spark-jars.pom.xml",
        dest,
        {
            "spark.version": v["SPARK_VERSION"],
            "scala.binary.version": v["SCALA_BINARY_VERSION"],
            "scc.version": v["SPARK_CASSANDRA_CONNECTOR_VERSION"],
        },
        key,
    )
    (dest / ".resolved").write_text(key)
    return dest


def spark_jars() -> list[Path]:
    """The jars for `spark-submit --jars`: the resolved ones minus those pyspark ships."""
    from pipeline.spark_jars import jars_argument

    return [Path(j) for j in jars_argument(resolve_spark_jars()).split(",")]
