"""Least privilege in the real local Cassandra: set-up (as the admin) makes the schema and the
stream job's role; the role reads and writes rows of its keyspace and nothing else.

Each test has its own keyspace and its own role, so the shared ones are never touched.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cassandra import Unauthorized
from cassandra.cluster import Cluster, NoHostAvailable
from conftest import cassandra_cluster

from pipeline import cassandra_schema, config, contract
from script.services.cassandra import drop_side_keyspace, set_up_side_keyspace

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def writer(cassandra_session: Any, unique: str) -> Iterator[config.CassandraSettings]:
    """Settings for a fresh keyspace and a fresh writer role (neither exists yet)."""
    env = {
        "CASSANDRA_KEYSPACE": f"roles_{unique}",
        "CASSANDRA_USERNAME": f"writer_{unique}",
        "CASSANDRA_PASSWORD": secrets.token_hex(12),
    }
    yield config.load(env).cassandra
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS roles_{unique}")
    cassandra_session.execute(f'DROP ROLE IF EXISTS "writer_{unique}"')


@pytest.fixture
def other_keyspace(cassandra_session: Any, unique: str) -> Iterator[str]:
    """Another keyspace with a table and a row, made by the admin."""
    keyspace = f"other_{unique}"
    cassandra_session.execute(cassandra_schema.keyspace_cql(keyspace, 1))
    cassandra_session.execute(f"CREATE TABLE {keyspace}.notes (id text PRIMARY KEY, body text)")
    cassandra_session.execute(f"INSERT INTO {keyspace}.notes (id, body) VALUES ('a', 'kept')")
    yield keyspace
    cassandra_session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")


def set_up(cassandra_session: Any, writer: config.CassandraSettings) -> None:
    cassandra_schema.set_up(cassandra_session, writer)


def login(settings: config.CassandraSettings, password: str | None = None):
    """A session as ``settings.username``; the caller shuts its cluster down."""
    return cassandra_cluster(settings, password).connect()


def permissions(session: Any, role: str) -> set[tuple[str, str]]:
    rows = session.execute(f'LIST ALL PERMISSIONS OF "{role}" NORECURSIVE')
    return {(row.resource, row.permission) for row in rows}


def schema(session: Any, keyspace: str) -> dict[tuple[str, str], str]:
    rows = session.execute(
        "SELECT table_name, column_name, type FROM system_schema.columns WHERE keyspace_name = %s",
        (keyspace,),
    )
    return {(row.table_name, row.column_name): row.type for row in rows}


def a_user(n: int) -> dict[str, Any]:
    record: dict[str, Any] = {name: f"{name} {n}" for name in contract.FIELD_NAMES}
    record["produced_at"] = 1_714_564_800_000 + n
    return record


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        # no control connection: each host's error
        (
            NoHostAvailable("Unable to connect to any servers", {"127.0.0.1:9042": OSError(111)}),
            "cannot connect to Cassandra at .*: 111 \\(is Cassandra up\\?",
        ),
        # the control connection opened, no host's pool did: a list of hosts (seen as the
        # stream job waited for a Cassandra just restarted, whose logins timed out)
        (
            NoHostAvailable("Unable to connect to any servers", ["127.0.0.1"]),
            re.escape("('Unable to connect to any servers', ['127.0.0.1']) (is Cassandra up?"),
        ),
    ],
)
def test_a_failed_connect_says_why_in_either_shape_the_driver_gives(
    monkeypatch: pytest.MonkeyPatch, error: NoHostAvailable, detail: str
) -> None:
    def refuse(_cluster: Cluster) -> None:
        raise error

    monkeypatch.setattr(Cluster, "connect", refuse)
    with pytest.raises(cassandra_schema.CassandraUnavailable, match=detail):
        cassandra_schema.connect(config.load().cassandra)


def test_set_up_twice_gives_the_same_schema_and_exactly_select_and_modify(
    cassandra_session: Any, writer: config.CassandraSettings
) -> None:
    set_up(cassandra_session, writer)
    first = (
        schema(cassandra_session, writer.keyspace),
        permissions(cassandra_session, writer.username),
    )
    set_up(cassandra_session, writer)

    tables, granted = first
    assert (tables, granted) == (
        schema(cassandra_session, writer.keyspace),
        permissions(cassandra_session, writer.username),
    )
    assert {table for table, _ in tables} == {
        writer.table,
        writer.dead_letter_table,
        writer.warm_up_table,
    }
    assert {column for table, column in tables if table == writer.table} == set(
        contract.FIELD_NAMES
    )
    assert granted == {
        (f"<keyspace {writer.keyspace}>", "SELECT"),
        (f"<keyspace {writer.keyspace}>", "MODIFY"),
    }
    [role] = cassandra_session.execute(
        "SELECT can_login, is_superuser FROM system_auth.roles WHERE role = %s",
        (writer.username,),
    )
    assert (role.can_login, role.is_superuser) == (True, False)


def test_the_writer_writes_and_reads_rows_of_its_keyspace(
    cassandra_session: Any, writer: config.CassandraSettings
) -> None:
    set_up(cassandra_session, writer)
    session = login(writer)
    try:
        where = f"{writer.keyspace}.{writer.table}"
        users = [a_user(n) for n in range(3)]
        insert = session.prepare(
            f"INSERT INTO {where} ({', '.join(contract.FIELD_NAMES)}) "
            f"VALUES ({', '.join('?' for _ in contract.FIELD_NAMES)})"
        )
        for user in users:
            session.execute(insert, list(user.values()))
        stored = [row._asdict() for row in session.execute(f"SELECT * FROM {where}")]
    finally:
        session.cluster.shutdown()
    assert sorted(stored, key=lambda r: r["id"]) == sorted(users, key=lambda r: r["id"])


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE {ks}.extra (id text PRIMARY KEY)",
        "ALTER TABLE {ks}.{table} ADD nickname text",
        "DROP TABLE {ks}.{table}",
        "TRUNCATE {other}.notes",
        "DROP KEYSPACE {ks}",
        "CREATE KEYSPACE {ks}_more WITH replication = "
        "{{'class': 'SimpleStrategy', 'replication_factor': 1}}",
        "SELECT * FROM {other}.notes",
        "INSERT INTO {other}.notes (id, body) VALUES ('b', 'written')",
        "GRANT SELECT ON KEYSPACE {other} TO {role}",
        "CREATE ROLE {role}_more WITH LOGIN = true AND PASSWORD = 'x'",
    ],
    ids=[
        "create table",
        "alter table",
        "drop table",
        "truncate another keyspace",
        "drop keyspace",
        "create keyspace",
        "read another keyspace",
        "write another keyspace",
        "grant itself more",
        "create a role",
    ],
)
def test_the_writer_is_refused_schema_changes_and_other_keyspaces(
    cassandra_session: Any,
    writer: config.CassandraSettings,
    other_keyspace: str,
    statement: str,
) -> None:
    set_up(cassandra_session, writer)
    before = schema(cassandra_session, writer.keyspace), schema(cassandra_session, other_keyspace)
    cql = statement.format(
        ks=writer.keyspace, table=writer.table, other=other_keyspace, role=writer.username
    )
    session = login(writer)
    try:
        with pytest.raises(Unauthorized):
            session.execute(cql)
    finally:
        session.cluster.shutdown()
    after = schema(cassandra_session, writer.keyspace), schema(cassandra_session, other_keyspace)
    assert after == before
    notes = [
        tuple(row) for row in cassandra_session.execute(f"SELECT * FROM {other_keyspace}.notes")
    ]
    assert notes == [("a", "kept")]


def test_set_up_applies_a_changed_password_and_takes_back_extra_permissions(
    cassandra_session: Any, writer: config.CassandraSettings, other_keyspace: str
) -> None:
    set_up(cassandra_session, writer)
    role = writer.username
    cassandra_session.execute(f'GRANT CREATE ON KEYSPACE {writer.keyspace} TO "{role}"')
    cassandra_session.execute(f'GRANT SELECT ON ALL KEYSPACES TO "{role}"')
    cassandra_session.execute(f'GRANT MODIFY ON TABLE {other_keyspace}.notes TO "{role}"')
    assert len(permissions(cassandra_session, role)) == 5
    changed = config.load(
        {
            "CASSANDRA_KEYSPACE": writer.keyspace,
            "CASSANDRA_USERNAME": role,
            "CASSANDRA_PASSWORD": secrets.token_hex(12),
        }
    ).cassandra

    set_up(cassandra_session, changed)

    assert permissions(cassandra_session, role) == {
        (f"<keyspace {writer.keyspace}>", "SELECT"),
        (f"<keyspace {writer.keyspace}>", "MODIFY"),
    }
    session = login(changed)
    session.cluster.shutdown()
    with pytest.raises(NoHostAvailable, match="password"):
        login(writer)  # the old password


def test_the_admin_cannot_be_the_stream_jobs_role(
    cassandra_session: Any, writer: config.CassandraSettings
) -> None:
    admin = config.cassandra_admin().username
    with pytest.raises(config.ConfigError, match="CASSANDRA_USERNAME=.* is the admin login"):
        config.load({"CASSANDRA_KEYSPACE": writer.keyspace, "CASSANDRA_USERNAME": admin})
    with pytest.raises(config.ConfigError, match="CASSANDRA_USERNAME=.* is the admin login"):
        set_up(cassandra_session, dataclasses.replace(writer, username=admin))
    assert schema(cassandra_session, writer.keyspace) == {}  # nothing was made


def test_the_jobs_check_names_the_set_up_for_a_missing_table_or_column(
    cassandra_session: Any, writer: config.CassandraSettings
) -> None:
    set_up(cassandra_session, writer)
    session = login(writer)
    try:
        cassandra_schema.check_schema(session, writer)  # what set-up made passes
        where = f"{writer.keyspace}.{writer.table}"
        cassandra_session.execute(f"ALTER TABLE {where} DROP picture")
        with pytest.raises(cassandra_schema.SchemaMissing) as lacking:
            cassandra_schema.check_schema(session, writer)
        set_up(cassandra_session, writer)  # adds it back
        cassandra_schema.check_schema(session, writer)
        dead = f"{writer.keyspace}.{writer.dead_letter_table}"
        cassandra_session.execute(f"DROP TABLE {dead}")
        with pytest.raises(cassandra_schema.SchemaMissing) as missing:
            cassandra_schema.check_schema(session, writer)
    finally:
        session.cluster.shutdown()
    assert str(lacking.value).startswith(f"table {where} lacks the contract's column(s) picture:")
    assert str(missing.value).startswith(f"table {dead} does not exist")
    for message in (str(lacking.value), str(missing.value)):
        assert "`./run.sh up`" in message and "cassandra-init" in message


def run_set_up(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline.cassandra_schema``, Compose's cassandra-init, with ``env`` added."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cassandra_schema"],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_init_command_sets_up_twice_and_refuses_the_admin_as_writer(
    cassandra_session: Any, writer: config.CassandraSettings
) -> None:
    env = {
        "CASSANDRA_KEYSPACE": writer.keyspace,
        "CASSANDRA_USERNAME": writer.username,
        "CASSANDRA_PASSWORD": writer.password,
    }
    runs = [run_set_up(env), run_set_up(env)]

    assert [r.returncode for r in runs] == [0, 0], [r.stderr for r in runs]
    done = f"role {writer.username} may log in and SELECT and MODIFY rows of keyspace"
    assert all(done in r.stderr for r in runs)
    assert all(writer.password not in r.stdout + r.stderr for r in runs)
    assert permissions(cassandra_session, writer.username) == {
        (f"<keyspace {writer.keyspace}>", "SELECT"),
        (f"<keyspace {writer.keyspace}>", "MODIFY"),
    }
    admin = config.cassandra_admin().username
    refused = run_set_up({**env, "CASSANDRA_USERNAME": admin})
    assert refused.returncode == 2
    assert f"CASSANDRA_USERNAME={admin!r} is the admin login" in refused.stderr


def test_an_admin_the_node_does_not_know_yet_is_made_as_cassandra_cassandra(
    cassandra_session: Any, unique: str
) -> None:
    """A fresh node knows only cassandra/cassandra: set-up makes the configured admin with it.
    (The shared node's default superuser is that; a new admin name leaves it as it is.)"""
    name, password = f"admin_{unique}", secrets.token_hex(12)
    admin = config.cassandra_admin(
        {"CASSANDRA_ADMIN_USERNAME": name, "CASSANDRA_ADMIN_PASSWORD": password}
    )
    try:
        session = cassandra_schema.admin_session(admin)
        try:
            [row] = session.execute(
                "SELECT is_superuser, can_login FROM system_auth.roles WHERE role = %s", (name,)
            )
            assert session.cluster.auth_provider.username == name
        finally:
            session.cluster.shutdown()
        again = cassandra_schema.admin_session(admin)  # known now: logs straight in
        again.cluster.shutdown()
    finally:
        cassandra_session.execute(f'DROP ROLE IF EXISTS "{name}"')
    assert (row.is_superuser, row.can_login) == (True, True)


def test_a_side_job_gets_its_keyspace_and_a_role_of_its_own_and_both_are_dropped(
    cassandra_session: Any, unique: str
) -> None:
    """What the benchmark's and the tests' own stream jobs use: the pipeline's writer role
    keeps exactly its grants."""
    overrides = {"CASSANDRA_KEYSPACE": f"side_{unique}"}
    shared = config.load().cassandra.username
    before = (
        permissions(cassandra_session, shared) if _role_exists(cassandra_session, shared) else None
    )
    try:
        added = set_up_side_keyspace(overrides)
        side = config.load({**overrides, **added}).cassandra
        assert side.username not in (shared, config.cassandra_admin().username)
        assert permissions(cassandra_session, side.username) == {
            (f"<keyspace side_{unique}>", "SELECT"),
            (f"<keyspace side_{unique}>", "MODIFY"),
        }
        session = login(side)
        try:
            cassandra_schema.check_schema(session, side)
        finally:
            session.cluster.shutdown()
    finally:
        drop_side_keyspace(overrides)
    assert not _role_exists(cassandra_session, side.username)
    assert schema(cassandra_session, f"side_{unique}") == {}
    if before is not None:
        assert permissions(cassandra_session, shared) == before


def _role_exists(session: Any, role: str) -> bool:
    return bool(
        list(session.execute("SELECT role FROM system_auth.roles WHERE role = %s", (role,)))
    )


def test_airflow_gets_no_cassandra_setting_and_the_job_no_admin_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Even when the user exported them for set-up: the local stack's environments."""
    from script.services.airflow import airflow_env
    from script.services.stream import stream_env

    exported = {
        "CASSANDRA_USERNAME": "pipeline_writer",
        "CASSANDRA_PASSWORD": "writer-secret",
        "CASSANDRA_ADMIN_USERNAME": "ops",
        "CASSANDRA_ADMIN_PASSWORD": "admin-secret",
    }
    for name, value in exported.items():
        monkeypatch.setenv(name, value)
    airflow = airflow_env()
    job = stream_env()
    assert [name for name in airflow if name.startswith("CASSANDRA")] == []
    assert not {"writer-secret", "admin-secret"} & set(airflow.values())
    assert (job["CASSANDRA_USERNAME"], job["CASSANDRA_PASSWORD"]) == (
        "pipeline_writer",
        "writer-secret",
    )
    assert [name for name in job if name.startswith("CASSANDRA_ADMIN")] == []
    assert "admin-secret" not in job.values()


def test_a_refusal_on_one_node_is_raised_at_once(
    cassandra_session: Any,
    writer: config.CassandraSettings,
    other_keyspace: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Set-up asks a refused GRANT again only on a ring of several nodes (a node's roles cache
    may not know the admin yet); one node has no such window, and a role that is no superuser
    is told at once."""
    set_up(cassandra_session, writer)
    caplog.set_level("INFO", logger=cassandra_schema.log.name)
    session = login(writer)
    try:
        with pytest.raises(Unauthorized, match="AUTHORIZE"):
            cassandra_schema.as_admin(
                session, f'GRANT SELECT ON KEYSPACE {other_keyspace} TO "{writer.username}"'
            )
    finally:
        session.cluster.shutdown()
    assert "asking again" not in caplog.text
    granted = cassandra_session.execute(f'LIST ALL PERMISSIONS OF "{writer.username}" NORECURSIVE')
    assert {r.resource for r in granted} == {f"<keyspace {writer.keyspace}>"}
