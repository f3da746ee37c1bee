"""`./run.sh status`'s pipeline half: what it says about the data is what the data is."""

from __future__ import annotations

import pytest

from script import status
from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace


def test_status_lists_dead_letters_grouped_by_reason(
    cassandra_session, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyspace = f"status_{unique}"
    overrides = {"CASSANDRA_KEYSPACE": keyspace}
    login = set_up_side_keyspace(overrides)  # its own role, as a stream job of its own has
    try:
        reasons = ["not json", "not json", "empty message", "missing field id; unexpected field x"]
        for offset, reason in enumerate(reasons):
            cassandra_session.execute(
                f"INSERT INTO {keyspace}.dead_letters (topic, partition, offset, reason) "
                "VALUES (%s, %s, %s, %s)",
                ("t", 0, offset, reason),
            )
        for name, value in {**overrides, **login}.items():
            monkeypatch.setenv(name, value)
        lines = status.pipeline_lines({"cassandra"})
    finally:
        drop_side_keyspace(overrides)
    text = "\n".join(lines)
    assert f"{keyspace}.dead_letters" in text and "4 rows" in text
    grouped = [line.split(None, 1) for line in lines if line.startswith("    ")]
    assert grouped == [
        ["2", "not json"],
        ["1", "empty message"],
        ["1", "missing field id; unexpected field x"],
    ]
