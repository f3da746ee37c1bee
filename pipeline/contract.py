"""The one contract for a user record as it travels Airflow -> Kafka -> Spark -> Cassandra.

The producer validates against ``FIELDS`` before sending, the Spark job derives its schema
from it and the Cassandra table is created from it. Nothing else lists the fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Field:
    """One field of the record: its name, its JSON type and whether it must be non-empty."""

    name: str
    kind: str  # "string" or "long"
    required: bool = True


# `id` is randomuser's stable `login.uuid`: a replay upserts instead of duplicating.
FIELDS: tuple[Field, ...] = (
    Field("id", "string"),
    Field("first_name", "string"),
    Field("last_name", "string"),
    Field("gender", "string"),
    Field("address", "string"),
    Field("post_code", "string"),
    Field("email", "string"),
    Field("username", "string"),
    Field("dob", "string"),
    Field("registered_date", "string"),
    Field("phone", "string"),
    Field("picture", "string"),
    # Milliseconds since the epoch when the producer sent the record: end-to-end latency.
    Field("produced_at", "long"),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
PRIMARY_KEY = "id"

_PY_TYPES = {"string": str, "long": int}
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1  # Spark LongType and CQL bigint
# The most bytes (UTF-8) a string field may hold: Cassandra refuses a partition key (``id``)
# over 65,535 bytes, and one cap for every field keeps a record well inside a Kafka message.
MAX_STRING_BYTES = 65_535
CQL_TYPES = {"string": "text", "long": "bigint"}


class InvalidRecord(ValueError):
    """A record that does not satisfy the contract; the message names the field."""


def validate(record: Mapping[str, Any]) -> None:
    """Raise ``InvalidRecord`` unless ``record`` has exactly the contract's fields and types.

    Required fields must be present and non-empty; ``bool`` is not accepted as a long.
    """
    extra = set(record) - set(FIELD_NAMES)
    if extra:
        raise InvalidRecord(f"unexpected field(s): {', '.join(sorted(extra))}")
    for field in FIELDS:
        value = record.get(field.name)
        if value is None or value == "":
            if field.required:
                raise InvalidRecord(f"missing required field {field.name!r}")
            continue
        expected = _PY_TYPES[field.kind]
        if not isinstance(value, expected) or isinstance(value, bool):
            raise InvalidRecord(
                f"field {field.name!r} must be {field.kind}, got {type(value).__name__}"
            )
        if field.kind == "long" and not LONG_MIN <= value <= LONG_MAX:
            raise InvalidRecord(f"field {field.name!r} is outside the 64-bit range")
        if (
            field.kind == "string"
            and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES
        ):
            raise InvalidRecord(f"field {field.name!r} is over {MAX_STRING_BYTES} bytes")


def cql_columns() -> str:
    """The column list of the Cassandra table, e.g. ``id text, first_name text, ...``."""
    return ", ".join(f"{f.name} {CQL_TYPES[f.kind]}" for f in FIELDS)
