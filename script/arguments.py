"""The command line's refusals: one line that names the option, the value and what is allowed.

Every command of `./run.sh` parses with ``Parser``: a bad option, argument or value stops it
before it starts anything, with ``UsageError`` (shown as it is, exit 2, no usage block). An
option that sets a DAG parameter or a setting is read by that variable's rule in the settings
table (``pipeline.config``), the same rule the DAG's ``Param`` and the setting hold; the
benchmark's and the faults' own options are read by rules of the same kinds (``rule``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from pipeline import config


class UsageError(ValueError):
    """A command line the command cannot run; the message is the whole line, prog first."""


def rule(kind: str, minimum: int = 0) -> config.Variable:
    """The rule of an option no setting holds, read and worded as the table's (``config.read``)."""
    return config.Variable("", "", "", (), kind, minimum)


class Parser(argparse.ArgumentParser):
    """``argparse``, with each refusal one line (``UsageError``) and options read by a rule."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rules: dict[str, tuple[str, config.Variable, str]] = {}

    def add_checked(
        self, option: str, checked_by: config.Variable, note: str = "", **kwargs: Any
    ) -> None:
        """Add ``option``: its value, when given, is read by ``checked_by`` (a default is taken
        as it is); ``note`` says what a special value means, in the refusal."""
        action = self.add_argument(option, **kwargs)
        self._rules[action.dest] = (option, checked_by, note)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extra = super().parse_known_args(args, namespace)
        for dest, (option, checked_by, note) in self._rules.items():
            raw = getattr(parsed, dest, None)
            if isinstance(raw, str):
                try:
                    setattr(parsed, dest, config.read(checked_by, raw))
                except ValueError as exc:
                    self.error(f"{option} {raw}: {exc}" + (f" ({note})" if note else ""))
        return parsed, extra

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")
