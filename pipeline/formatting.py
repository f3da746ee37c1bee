"""Turn one raw randomuser.me user into the pipeline's record (``pipeline.contract``), or a skip.

The field names here are checked against ``contract.FIELDS`` by the tests and by the producer,
which validates every record before sending it.

Pure: no I/O, no clock. The caller passes ``produced_at`` so the timestamp is taken as close to
the send as possible. Only the contract's fields are copied, so the login's password, salt and
hashes can never leave this function.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Skip:
    """A user that cannot become a complete record; ``reason`` names the first bad field."""

    reason: str


class _Missing(Exception):
    """Internal: a required raw field is absent, empty or of the wrong type."""

    def __init__(self, path: str, problem: str = "missing") -> None:
        super().__init__(f"{problem} {path}")
        self.reason = f"{problem} {path}"


def _get(raw: Mapping[str, Any], path: str) -> Any:
    node: Any = raw
    for key in path.split("."):
        # dict, not Mapping: parsed JSON is always dicts, and the ABC check is 5x slower.
        if not isinstance(node, dict) or key not in node:
            raise _Missing(path)
        node = node[key]
    if node is None or (isinstance(node, str) and not node.strip()):
        raise _Missing(path)
    return node


def _text(raw: Mapping[str, Any], path: str) -> str:
    value = _get(raw, path)
    if not isinstance(value, str):
        raise _Missing(path, f"non-string ({type(value).__name__})")
    return value


def _text_or_int(raw: Mapping[str, Any], path: str) -> str:
    """Postcodes and street numbers are served as int for some countries, str for others."""
    value = _get(raw, path)
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _Missing(path, f"non-string ({type(value).__name__})")
    return str(value)


def format_user(raw: Mapping[str, Any], produced_at: int) -> dict[str, Any] | Skip:
    """Return the contract record for ``raw`` (a user as served), or ``Skip`` naming the problem.

    ``id`` is the stable ``login.uuid``; ``address`` is "<number> <street>, <city>, <state>,
    <country>"; ``post_code`` is always a string; ``picture`` is the medium URL; ``dob`` and
    ``registered_date`` are the date strings as served; ``produced_at`` is epoch milliseconds.
    The result passes ``contract.validate`` (the producer checks it again before sending).
    """
    if type(produced_at) is not int:
        raise TypeError(f"produced_at must be epoch milliseconds (int), got {produced_at!r}")
    try:
        record: dict[str, Any] = {
            "id": _text(raw, "login.uuid"),
            "first_name": _text(raw, "name.first"),
            "last_name": _text(raw, "name.last"),
            "gender": _text(raw, "gender"),
            "address": (
                f"{_text_or_int(raw, 'location.street.number')} "
                f"{_text(raw, 'location.street.name')}, {_text(raw, 'location.city')}, "
                f"{_text(raw, 'location.state')}, {_text(raw, 'location.country')}"
            ),
            "post_code": _text_or_int(raw, "location.postcode"),
            "email": _text(raw, "email"),
            "username": _text(raw, "login.username"),
            "dob": _text(raw, "dob.date"),
            "registered_date": _text(raw, "registered.date"),
            "phone": _text(raw, "phone"),
            "picture": _text(raw, "picture.medium"),
            "produced_at": produced_at,
        }
    except _Missing as missing:
        return Skip(missing.reason)
    return record
