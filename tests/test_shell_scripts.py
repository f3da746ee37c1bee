"""Every shell script of the repository passes shellcheck and stops on the first error."""

from __future__ import annotations

from compose_helpers import REPO, run, tool


def shell_scripts() -> list[str]:
    """Every *.sh in the repo (tracked or untracked, not ignored) plus the extension-less ones."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"])
    assert listed.returncode == 0, listed.stderr
    found = {
        path
        for path in listed.stdout.splitlines()
        if path.endswith(".sh") and (REPO / path).is_file()
    }
    found |= {path for path in ("run.sh", "run-docker.sh", ".ci/run") if (REPO / path).is_file()}
    return sorted(found)


def test_every_shell_script_passes_shellcheck() -> None:
    scripts = shell_scripts()
    assert {"run-docker.sh", "script/entrypoint.sh"} <= set(scripts), scripts
    result = run([tool("shellcheck"), *scripts])
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shell_script_stops_on_errors() -> None:
    missing = [p for p in shell_scripts() if "set -euo pipefail" not in (REPO / p).read_text()]
    assert not missing, f"these scripts lack `set -euo pipefail`: {missing}"
