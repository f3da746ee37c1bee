"""Turn one raw randomuser.me user into the pipeline's record (``pipeline.contract``), or a skip.

Each contract field says where its value is in a served user (``contract.Served``, ``Joined``,
``SendTime``); this module knows how to read those, and builds the record field by field in
contract order. A new field is one line in the contract.

Pure: no I/O, no clock. The caller passes ``produced_at`` so the timestamp is taken as close to
the send as possible. Only the contract's fields are copied, so the login's password, salt and
hashes can never leave this function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.contract import FIELDS, Field, Joined, SendTime, Served


@dataclass(frozen=True)
class Skip:
    """A user that cannot become a complete record; ``reason`` names the first bad field."""

    reason: str


class _Missing(Exception):
    """Internal: a required raw field is absent, empty or of the wrong type."""

    def __init__(self, path: str, problem: str = "missing") -> None:
        super().__init__(f"{problem} {path}")
        self.reason = f"{problem} {path}"


# A path's keys, outermost first: "location.city" is split once, not once per user.
_Keys = tuple[str, ...]


def _get(raw: Mapping[str, Any], keys: _Keys) -> Any:
    """The value at ``keys``; ``_Missing`` when a step is absent or not an object, or the value
    is null or a blank string."""
    node: Any = raw
    try:
        for key in keys:
            node = node[key]
    except (KeyError, TypeError):  # parsed JSON: only a dict has string keys
        raise _Missing(".".join(keys)) from None
    if node is None or (node.__class__ is str and (not node or node.isspace())):
        raise _Missing(".".join(keys))
    return node


# A reader takes the served user and the send time and returns the field's value.
_Reader = Callable[[Mapping[str, Any], int], Any]


def _served_reader(source: Served, kind: str) -> _Reader:
    """A string, or with ``numeric`` a string or an int (postcodes and street numbers are
    served as int for some countries, str for others), or for a long field an int."""
    keys = tuple(source.path.split("."))

    def read_integer(raw: Mapping[str, Any], _: int) -> int:
        value = _get(raw, keys)
        if value.__class__ is not int:  # not a bool either
            raise _Missing(source.path, f"non-integer ({type(value).__name__})")
        return value

    def read_text(raw: Mapping[str, Any], _: int) -> str:
        value = _get(raw, keys)
        if value.__class__ is not str:
            raise _Missing(source.path, f"non-string ({type(value).__name__})")
        return value

    def read_text_or_int(raw: Mapping[str, Any], _: int) -> str:
        value = _get(raw, keys)
        if value.__class__ is str:
            return value
        if value.__class__ is not int:  # not a bool either
            raise _Missing(source.path, f"non-string ({type(value).__name__})")
        return str(value)

    if kind == "long":
        return read_integer
    return read_text_or_int if source.numeric else read_text


def _reader(field: Field) -> _Reader:
    """How to read ``field``'s value; a source its kind cannot hold is a contract error."""
    source = field.source
    if isinstance(source, SendTime) and field.kind == "long":
        return lambda _, produced_at: produced_at
    if isinstance(source, Served) and field.kind in ("string", "long"):
        return _served_reader(source, field.kind)
    if isinstance(source, Joined) and field.kind == "string":
        parts = [_served_reader(part, "string") for part in source.parts]
        template = source.template
        return lambda raw, produced_at: template.format(*(part(raw, produced_at) for part in parts))
    raise TypeError(f"contract field {field.name!r} ({field.kind}) cannot come from {source!r}")


def _optional(read: _Reader) -> _Reader:
    def read_or_none(raw: Mapping[str, Any], produced_at: int) -> Any:
        try:
            return read(raw, produced_at)
        except _Missing:
            return None

    return read_or_none


def formatter(fields: Sequence[Field]) -> Callable[[Mapping[str, Any], int], dict[str, Any] | Skip]:
    """A function that builds the record of ``fields`` from a served user, field by field.

    It reads each field from where its source says, in order, and returns ``Skip`` naming the
    first required value that is missing or of the wrong type; an optional one is then None.
    Raise ``TypeError`` for a field whose kind its source cannot give (say, a joined long).
    """
    readers = tuple(
        (field.name, _reader(field) if field.required else _optional(_reader(field)))
        for field in fields
    )

    def build(raw: Mapping[str, Any], produced_at: int) -> dict[str, Any] | Skip:
        try:
            return {name: read(raw, produced_at) for name, read in readers}
        except _Missing as missing:
            return Skip(missing.reason)

    return build


_build_record = formatter(FIELDS)


def format_user(raw: Any, produced_at: int) -> dict[str, Any] | Skip:
    """Return the contract record for ``raw`` (a user as served), or ``Skip`` naming the problem.

    Each field is read from where the contract says, in contract order: ``id`` is the stable
    ``login.uuid``; ``address`` is "<number> <street>, <city>, <state>, <country>";
    ``post_code`` is always a string; ``picture`` is the medium URL; ``dob`` and
    ``registered_date`` are the date strings as served; ``produced_at`` is epoch milliseconds.
    ``Skip`` names the first required value that is missing or of the wrong type, or says that
    ``raw`` is not an object at all (``null``, a string, a number, an array). The result
    passes ``contract.validate`` (the producer checks it again before sending).
    """
    if type(produced_at) is not int:
        raise TypeError(f"produced_at must be epoch milliseconds (int), got {produced_at!r}")
    if not isinstance(raw, dict):  # a `results` entry may be anything JSON can hold
        return Skip(f"entry is {_json_type(raw)}, not an object")
    return _build_record(raw, produced_at)


def _json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for skip reasons."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__
