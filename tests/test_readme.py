"""The README stays true: every setting with its default, and the commands CI runs, in order."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline import config

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", README, flags=re.M))
    assert set(rows) >= set(config.DEFAULTS), set(config.DEFAULTS) - set(rows)
    for name, default in config.DEFAULTS.items():
        shown = rows[name].strip()
        if default.startswith(str(REPO)):
            default = default[len(str(REPO)) + 1 :]
        assert shown == (f"`{default}`" if default else "(empty)"), name


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    commands = re.search(r"## Two commands\n.*?```bash\n(.*?)```", README, flags=re.S).group(1)
    assert "./run.sh        # " in commands and "./run.sh test   # " in commands
    ci = [
        line
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    runs = [line.split() for line in ci if line.startswith("./run.sh")]
    assert runs[-1] == ["./run.sh", "test"]
    # The README's first command comes first: a pipeline run (flags only, no sub-command).
    assert runs[0][0] == "./run.sh" and all(
        word.startswith("-") or word.isdigit() for word in runs[0][1:]
    )
