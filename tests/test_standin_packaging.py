"""The randomuser stand-in (``standin/``) stays a test double, out of what the pipeline runs.

The Spark image neither copies it nor has it in its build context; no Compose service mounts or
runs it unless the service sits behind a profile; the runtime code never imports it; and the
stand-in itself needs nothing but the standard library, so it can run anywhere on its own.
"""

from __future__ import annotations

import fnmatch
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import imported_modules

REPO = Path(__file__).resolve().parents[1]
STANDIN = REPO / "standin"
RUNTIME_CODE = [
    *sorted((REPO / "pipeline").rglob("*.py")),
    *sorted((REPO / "dags").rglob("*.py")),
    REPO / "spark_stream.py",
]


def carries_standin(path: Path) -> bool:
    """Whether copying or mounting ``path`` brings the stand-in along."""
    path = path.resolve()
    return path == STANDIN or STANDIN in path.parents or path in STANDIN.parents


def is_standin(module: str) -> bool:
    return module == "standin" or module.startswith("standin.")


# --- the Spark image ------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def build_context_sources() -> list[Path]:
    """What the image takes from the build context: the sources of COPY/ADD without --from."""
    sources = []
    for word, rest in dockerfile_instructions():
        args = shlex.split(rest)
        if word in ("COPY", "ADD") and not any(a.startswith("--from") for a in args):
            sources += [REPO / a for a in [a for a in args if not a.startswith("--")][:-1]]
    return sources


def dockerignored(path: str) -> bool:
    """Whether .dockerignore leaves ``path`` out of the build context (the last match decides)."""
    prefixes = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 2)]
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_the_spark_image_copies_no_standin() -> None:
    sources = build_context_sources()
    # The parse sees what the image does carry, so an empty list cannot pass for a clean one.
    assert REPO / "pipeline" in sources and REPO / "spark_stream.py" in sources
    assert [s for s in sources if carries_standin(s)] == []


def test_the_standin_is_not_even_in_the_spark_image_build_context() -> None:
    modules = sorted(p.relative_to(REPO).as_posix() for p in STANDIN.glob("*.py"))
    assert "standin/server.py" in modules
    assert [m for m in modules if not dockerignored(m)] == []
    assert not dockerignored("pipeline/randomuser.py") and not dockerignored("spark_stream.py")


# --- Compose --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def bind_sources(service: dict[str, Any]) -> list[Path]:
    """The host paths a service mounts (short or long syntax), relative to the project."""
    sources = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            source = volume.get("source", "") if volume.get("type") == "bind" else ""
        else:
            source = volume.split(":", 1)[0]
        if source.startswith((".", "/")):
            sources.append(REPO / source)
    return sources


def command_words(service: dict[str, Any]) -> list[str]:
    words = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        words += value.split() if isinstance(value, str) else [str(w) for w in value]
    return words


def test_no_compose_service_mounts_or_runs_the_standin_unless_a_profile_asks(
    services: dict[str, dict[str, Any]],
) -> None:
    # The mounts are read through the merge keys, as Compose reads them.
    assert REPO / "pipeline" in bind_sources(services["airflow-scheduler"])
    carriers = {
        name
        for name, service in services.items()
        if any(carries_standin(source) for source in bind_sources(service))
        or any("standin" in word for word in command_words(service))
    }
    unprofiled = sorted(name for name in carriers if not services[name].get("profiles"))
    assert unprofiled == [], f"these services carry standin/ outside a profile: {unprofiled}"


# --- imports --------------------------------------------------------------------------------


def test_the_runtime_code_never_imports_the_standin() -> None:
    # The walk finds imports wherever they are: the stand-in's own tests import it.
    assert "standin" in imported_modules(REPO / "tests" / "test_standin.py")
    assert (REPO / "pipeline" / "producer.py") in RUNTIME_CODE
    offenders = {
        path.relative_to(REPO).as_posix(): sorted(filter(is_standin, imported_modules(path)))
        for path in RUNTIME_CODE
    }
    assert {path: found for path, found in offenders.items() if found} == {}


def test_the_standin_needs_only_the_standard_library() -> None:
    modules = sorted(STANDIN.glob("*.py"))
    assert {p.name for p in modules} >= {"__init__.py", "__main__.py", "data.py", "render.py"}
    outside = {
        path.name: sorted(
            name
            for name in imported_modules(path)
            if not is_standin(name) and name.split(".")[0] not in sys.stdlib_module_names
        )
        for path in modules
    }
    assert {name: found for name, found in outside.items() if found} == {}
