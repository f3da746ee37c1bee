"""The README and docs/ stay true: a short front door whose links resolve, every setting with its
default, the DAG id, the ports, the commands CI runs, and the module diagram."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import imported_modules
from docs_pages import README, code_blocks, name, page, pages, without_code_blocks

from pipeline import config

REPO = Path(__file__).resolve().parents[1]
MOST_README_LINES = 200


def test_the_readme_is_a_front_door_of_at_most_200_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MOST_README_LINES, (
        f"README.md has {lines} lines: move the depth to a page of docs/ and link it"
    )


def heading_anchors(path: Path) -> set[str]:
    """The anchors a markdown renderer (GitHub's) gives the headings of ``path``."""
    headings = re.findall(r"^#+ (.+)$", without_code_blocks(path.read_text()), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def relative_links(path: Path) -> list[str]:
    """Each link target of ``path`` that is not a URL: a file of the repository, maybe with a
    ``#heading``, or a ``#heading`` of the page itself."""
    targets = re.findall(r"\]\(([^)\s]+)\)", without_code_blocks(path.read_text()))
    return [t for t in targets if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("path", pages(), ids=name)
def test_every_link_of_a_page_reaches_a_file_and_a_heading_of_it(path: Path) -> None:
    broken = []
    for link in relative_links(path):
        file, _, anchor = link.partition("#")
        target = (path.parent / file).resolve() if file else path
        if not target.exists() or (anchor and anchor not in heading_anchors(target)):
            broken.append(link)
    assert not broken, f"{name(path)} links to what is not there: {broken}"


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {
        (README.parent / link.partition("#")[0]).resolve()
        for link in relative_links(README)
        if link.startswith("docs/")
    }
    unlinked = [name(p) for p in pages()[1:] if p.resolve() not in linked]
    assert not unlinked, f"README.md does not link {unlinked}: a reader would never find them"


def test_the_configuration_table_is_the_one_pipeline_config_generates() -> None:
    """Every variable with its default, reader and help, exactly as ``VARIABLES`` declares them."""
    table = re.search(
        r"^<!-- Generated from pipeline/config.py .*? -->\n(.*?)^<!-- end of generated table -->",
        page("configuration").read_text(),
        flags=re.S | re.M,
    )
    assert table, "docs/configuration.md has lost the markers around its configuration table"
    assert table.group(1) == config.markdown(), (
        "docs/configuration.md's table is stale: paste the output of "
        "`python -m pipeline.config --markdown` between its markers"
    )


def test_the_docs_trigger_the_dag_by_its_id() -> None:
    triggered = {
        name(path): re.findall(r"dags trigger ([\w.-]+)", path.read_text()) for path in pages()
    }
    every = {dag for found in triggered.values() for dag in found}
    assert every == {config.DAG_ID}, triggered


def test_the_port_table_shows_the_local_stacks_default_ports() -> None:
    d = {v.name: v.default for v in config.VARIABLES}
    expected = {
        "Airflow UI / API": d["AIRFLOW_PORT"],
        "Kafka broker": d["KAFKA_BOOTSTRAP_SERVERS"].rpartition(":")[2],
        "ZooKeeper": d["ZOOKEEPER_PORT"],
        "Cassandra (CQL)": d["CASSANDRA_PORT"],
        "PostgreSQL (Airflow metadata)": d["POSTGRES_PORT"],
        "Spark UI (stream job)": d["SPARK_UI_PORT"],
        "randomuser stand-in (offline runs)": d["USERS_STANDIN_PORT"],
        "Pipeline page (`MONITOR_PORT`)": d["MONITOR_PORT"],
    }
    text = page("configuration").read_text()
    local = dict(re.findall(r"^\| ([^|]+?) \| (\d+) \| yes \|", text, flags=re.M))
    assert local == expected


def test_the_readme_gives_the_two_commands_and_where_to_look() -> None:
    text = README.read_text()
    commands = re.search(r"## Two commands\n.*?```bash\n(.*?)```", text, flags=re.S).group(1)
    assert "./run.sh        # " in commands and "./run.sh test   # " in commands
    d = {v.name: v.default for v in config.VARIABLES}
    for url in (f"http://localhost:{d['AIRFLOW_PORT']}", f"http://localhost:{d['SPARK_UI_PORT']}"):
        assert url in text, f"README.md does not say where to look: {url}"
    assert d["AIRFLOW_ADMIN_USERNAME"] in text and ".stack/data/airflow/admin-password" in text


def test_ci_runs_the_commands_the_docs_give_in_their_order() -> None:
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    runs = [line.split() for line in ci if line.startswith("./run.sh")]
    # The test command comes last, one of those docs/development.md gives.
    given = [
        line.split("#")[0].split()
        for block in code_blocks(page("development").read_text(), "bash")
        for line in block.splitlines()
        if line.startswith("./run.sh test")
    ]
    assert runs[-1] in given, (runs[-1], given)
    # The README's first command comes first: a pipeline run (flags only, no sub-command).
    assert runs[0][0] == "./run.sh" and all(
        word.startswith("-") or word.isdigit() for word in runs[0][1:]
    )


# The parts of docs/development.md's module diagram (node id -> files), to hold its arrows to
# the code.
DIAGRAM_PARTS = {
    "dags": ["dags/"],
    "stream": ["spark_stream.py"],
    "pipeline": ["pipeline/"],
    "standin": ["standin/"],
    "tools": [
        "script/__main__.py",
        "script/run_pipeline.py",
        "script/status.py",
        "script/cluster_status.py",
        "script/suite.py",
        "script/benchmark/",
        "script/harness/",
        "script/faults/",
        "script/chaos/",
        "script/monitor/",
    ],
    "stack": ["script/stack.py"],
    "services": ["script/services/"],
    "basics": [
        "script/layout.py",
        "script/procs.py",
        "script/jars.py",
        "script/supervise.py",
        "script/airflow_quiet.py",
        "script/airflow_api.py",
        "script/pipeline_status.py",
        "script/arguments.py",
        "script/browser.py",
    ],
}


def _part_of(path: str) -> str | None:
    for part, prefixes in DIAGRAM_PARTS.items():
        if any(path == p or (p.endswith("/") and path.startswith(p)) for p in prefixes):
            return part
    return None


def _module_path(module: str) -> str | None:
    """``script.services.kafka`` -> its file, relative to the repo; None when not ours."""
    base = REPO / module.replace(".", "/")
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return str(candidate.relative_to(REPO))
    return None


def code_arrows() -> set[tuple[str, str]]:
    """(importer part, imported part) for every import between two parts, read with ast."""
    arrows = set()
    files = [REPO / "spark_stream.py", *REPO.glob("dags/*.py")]
    files += [f for d in ("pipeline", "standin", "script") for f in (REPO / d).rglob("*.py")]
    for file in files:
        source = _part_of(str(file.relative_to(REPO)))
        for module in imported_modules(file):
            path = _module_path(module)
            target = _part_of(path) if path else None
            if source and target and target != source:
                arrows.add((source, target))
    return arrows


def test_the_module_diagram_draws_every_import_between_its_parts_and_no_other() -> None:
    text = page("development").read_text()
    diagram = re.search(r"```mermaid\nflowchart TD\n(.*?)```", text, flags=re.S)
    assert diagram, "docs/development.md has lost its module diagram (a mermaid flowchart)"
    drawn = set(re.findall(r"^\s*(\w+)(?:\[[^\]]*\])? --> (\w+)", diagram.group(1), flags=re.M))
    assert drawn == code_arrows(), (
        f"draw {sorted(code_arrows() - drawn)}, remove {sorted(drawn - code_arrows())}"
    )


def test_every_module_of_ours_is_in_a_part_of_the_diagram() -> None:
    ours = [REPO / "spark_stream.py", *REPO.glob("dags/*.py")]
    ours += [f for d in ("pipeline", "standin", "script") for f in (REPO / d).rglob("*.py")]
    loose = [str(f.relative_to(REPO)) for f in ours if _part_of(str(f.relative_to(REPO))) is None]
    assert loose == ["script/__init__.py"]
