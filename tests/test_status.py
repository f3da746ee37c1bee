"""`./run.sh status`'s pipeline half: what it says about the data is what the data is."""

from __future__ import annotations

import uuid

import pytest

from script import status
from script.pipeline_status import TOKEN_MAX, TOKEN_MIN, count_rows, token_slices
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


def test_token_slices_cover_the_ring_once() -> None:
    slices = token_slices()
    assert slices[0][0] == TOKEN_MIN and slices[-1][1] == TOKEN_MAX
    assert all(low < high for low, high in slices)
    assert all(a[1] == b[0] for a, b in zip(slices, slices[1:], strict=False))


def test_row_counts_are_exact_over_many_token_slices(cassandra_session, unique: str) -> None:
    """The count `./run.sh status` prints, taken slice by slice (a single COUNT(*) times out on
    a large table), is every row once."""
    from cassandra.concurrent import execute_concurrent_with_args

    keyspace = f"status_{unique}"
    overrides = {"CASSANDRA_KEYSPACE": keyspace}
    set_up_side_keyspace(overrides)
    try:
        insert = cassandra_session.prepare(
            f"INSERT INTO {keyspace}.created_users (id, first_name) VALUES (?, ?)"
        )
        rows = [(str(uuid.uuid4()), f"user {n}") for n in range(20_000)]
        for ok, result in execute_concurrent_with_args(cassandra_session, insert, rows, 64):
            assert ok, result
        assert count_rows(cassandra_session, keyspace, "created_users") == len(rows)
        assert count_rows(cassandra_session, keyspace, "dead_letters") == 0
        assert count_rows(cassandra_session, keyspace, "no_such_table") is None
    finally:
        drop_side_keyspace(overrides)
