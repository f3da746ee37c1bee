"""The connector jars to hand to ``spark-submit --jars``, from the folder the set-up resolved.

The set-up resolves the Kafka source and the Cassandra connector with their runtime
dependencies into one folder. Some of those dependencies (scala-library, hadoop-client-*,
slf4j, snappy, ...) already ship with Spark in another version; passing both puts two copies
of a class on the classpath, so a jar whose artifact Spark already bundles is left out.

``python -m pipeline.spark_jars [FOLDER]`` prints the comma-separated list for ``--jars``.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

# Maven names a jar ``<artifactId>-<version>[-<classifier>].jar``; artifact ids may contain
# digits after a dash (``spark-sql-kafka-0-10_2.12``), so a version starts at the first dash
# followed by ``<digits>.`` and, failing that, at the last dash followed by a digit.
_DOTTED_VERSION = re.compile(r"^(?P<artifact>.+?)-\d+\.[^/]*\.jar$")
_ANY_VERSION = re.compile(r"^(?P<artifact>.+)-\d[^/-]*\.jar$")


class JarsNotFound(FileNotFoundError):
    """The jar folder is missing or holds no connector jars; the message names the fix."""


def artifact_name(jar_file_name: str) -> str:
    """The artifact id of a Maven-named jar: ``kafka-clients`` for ``kafka-clients-3.4.1.jar``."""
    for pattern in (_DOTTED_VERSION, _ANY_VERSION):
        match = pattern.match(jar_file_name)
        if match:
            return match.group("artifact")
    return jar_file_name.removesuffix(".jar")


def spark_bundled_jars_dir() -> Path:
    """The ``jars`` folder of the Spark that runs this Python (the ``pyspark`` package's own)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "jars"


def connector_jars(folder: Path, bundled: Iterable[str]) -> list[Path]:
    """The jars in ``folder`` whose artifact is not among the ``bundled`` jar file names, sorted.

    Raise ``JarsNotFound`` when ``folder`` does not exist or none of its jars is left.
    """
    if not folder.is_dir():
        raise JarsNotFound(
            f"connector jar folder {folder} does not exist: run `./run.sh up` to resolve the "
            "jars, or point SPARK_JARS_DIR at a folder holding them"
        )
    bundled_artifacts = {artifact_name(name) for name in bundled}
    jars = sorted(
        path for path in folder.glob("*.jar") if artifact_name(path.name) not in bundled_artifacts
    )
    if not jars:
        raise JarsNotFound(f"no connector jars in {folder} (SPARK_JARS_DIR)")
    return jars


def jars_argument(folder: Path) -> str:
    """The value for ``spark-submit --jars``: the connector jars of ``folder`` joined by commas."""
    bundled = [path.name for path in spark_bundled_jars_dir().glob("*.jar")]
    return ",".join(str(path) for path in connector_jars(folder, bundled))


def main(argv: list[str]) -> int:
    from pipeline import config

    folder = Path(argv[1]) if len(argv) > 1 else Path(config.load().stream.jars_dir)
    print(jars_argument(folder))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
