"""The Spark image's Dockerfile, checked without a Docker engine: it passes hadolint, its
versions equal stack/versions.env and requirements.txt, its connector jars match its Spark
build, and .dockerignore lets in what it copies.
"""

from __future__ import annotations

import fnmatch
import re

import pytest
from compose_helpers import (
    COMPOSE_FILE,
    DOCKERFILE,
    ENTRYPOINT,
    ENV_EXAMPLE,
    REPO,
    RUN_DOCKER,
    SPARK_POM,
    dockerfile_args,
    dockerfile_instructions,
    requirement_pin,
    run,
    tool,
    versions,
)

# Package registries' hosts, spelled in parts so that no file of ours names them.
REGISTRY_HOSTS = tuple(
    ".".join(parts)
    for parts in (
        ("pypi", "org"),
        ("repo", "maven", "apache", "org"),
        ("registry", "npmjs", "org"),
        ("deb", "debian", "org"),
    )
)


def test_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint"), str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_files_name_no_package_registry_host() -> None:
    files = [COMPOSE_FILE, DOCKERFILE, ENV_EXAMPLE, RUN_DOCKER, ENTRYPOINT, REPO / ".dockerignore"]
    files += sorted((REPO / "tests").glob("*.py"))  # the tests that spell them in parts too
    for path in files:
        text = path.read_text()
        for host in REGISTRY_HOSTS:
            assert host not in text, f"{path.name} names {host}"


def test_dockerfile_versions_equal_versions_env() -> None:
    args, pinned = dockerfile_args(), versions()
    for name in (
        "SPARK_VERSION",
        "SCALA_BINARY_VERSION_DOCKER",
        "SPARK_CASSANDRA_CONNECTOR_VERSION",
    ):
        assert name in args, f"the Dockerfile has no ARG {name}"
    for name, default in args.items():
        if name in pinned:
            assert default == pinned[name], (
                f"Dockerfile ARG {name}={default} but versions.env says {pinned[name]}"
            )


# The stream job's Python packages in the image, each pinned by an ARG equal to requirements.txt.
IMAGE_PACKAGES = {
    "cassandra-driver": "CASSANDRA_DRIVER_VERSION",
    "pyarrow": "PYARROW_VERSION",
    "msgspec": "MSGSPEC_VERSION",
    "pandas": "PANDAS_VERSION",
}


@pytest.mark.parametrize("package", sorted(IMAGE_PACKAGES))
def test_dockerfile_python_packages_equal_requirements(package: str) -> None:
    arg = IMAGE_PACKAGES[package]
    assert dockerfile_args()[arg] == requirement_pin(package)
    text = " ".join(rest for _, rest in dockerfile_instructions())
    assert f'"{package}==${{{arg}}}"' in text, f"the image does not install {package}==${{{arg}}}"


def test_the_image_installs_the_jobs_packages_and_nothing_the_job_does_not_use() -> None:
    installs = [
        rest for word, rest in dockerfile_instructions() if word == "RUN" and "pip install" in rest
    ]
    assert len(installs) == 1, installs
    installed = set(re.findall(r'"([A-Za-z0-9_.-]+)==', installs[0]))
    assert installed == set(IMAGE_PACKAGES), installed  # kafka-python is the producer's only


def test_connector_coordinates_match_the_spark_build_in_the_image() -> None:
    args = dockerfile_args()
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())

    def expand(value: str) -> str:
        return re.sub(r"\$\{([A-Z0-9_]+)\}", lambda m: args[m.group(1)], value)

    tarball = re.search(r'name="(spark-\$\{SPARK_VERSION\}-bin-hadoop3-scala[^"]+)"', text)
    assert tarball, "the Dockerfile does not download a spark-<version>-bin-hadoop3-scala<x> build"
    spark_build = expand(tarball.group(1))
    spark_version, spark_scala = re.fullmatch(
        r"spark-(\S+)-bin-hadoop3-scala(\S+)", spark_build
    ).groups()
    properties = {
        key: expand(value) for key, value in re.findall(r'-D([a-z.]+)="?([^"\s]+)"?', text)
    }
    pom = SPARK_POM.read_text()
    coordinates = {}
    for artifact, version in re.findall(
        r"<artifactId>([^<]+)</artifactId>\s*<version>([^<]+)</version>", pom
    ):
        if artifact == "spark-jars":
            continue
        resolve_prop = lambda v: re.sub(r"\$\{([a-z.]+)\}", lambda m: properties[m.group(1)], v)  # noqa: E731
        coordinates[resolve_prop(artifact)] = resolve_prop(version)
    assert coordinates == {
        f"spark-sql-kafka-0-10_{spark_scala}": spark_version,
        f"spark-cassandra-connector_{spark_scala}": args["SPARK_CASSANDRA_CONNECTOR_VERSION"],
    }, coordinates
    assert spark_scala == versions()["SCALA_BINARY_VERSION_DOCKER"] == "2.13"


def test_dockerfile_builds_the_documented_spark_image() -> None:
    instructions = dockerfile_instructions()
    text = " ".join(f"{word} {rest}" for word, rest in instructions)
    base = [rest for word, rest in instructions if word == "FROM"][-1]
    assert re.fullmatch(r"eclipse-temurin:17-jdk(-\w+)?", base), base
    assert "https://archive.apache.org/dist/spark" in text
    assert "sha512sum --check" in text, "the Spark download must be checked against its SHA-512"
    assert "cassandra-driver==" in text and '"python${PYTHON_VERSION}" -m venv' in text
    assert dockerfile_args()["PYTHON_VERSION"] == versions()["PYTHON_VERSION"]
    user = [rest for word, rest in instructions if word == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root"), "the image must not run as root"
    assert ("COPY", "spark_stream.py /opt/app/spark_stream.py") in instructions
    command = [rest for word, rest in instructions if word == "CMD"][-1]
    assert "spark-submit" in command and "/opt/app/spark_stream.py" in command
    assert "--packages" not in text, (
        "the jars are baked in; nothing is downloaded when the job starts"
    )


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            glob = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, glob) or path.startswith(glob + "/"):
                keep = negate
        return keep

    for word, rest in dockerfile_instructions():
        if word == "COPY" and "--from" not in rest:
            for source in rest.split()[:-1]:
                assert included(source), (
                    f".dockerignore hides {source}, which the Dockerfile copies"
                )
    assert not included(".env") and not included(".stack/venv"), (
        ".dockerignore must keep secrets and the venv out"
    )
