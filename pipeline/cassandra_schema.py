"""The Cassandra side of the pipeline: the keyspace, the users table and the dead-letter table.

Both tables are derived from ``pipeline.contract``; the DDL builders are pure, ``connect`` and
``ensure_schema`` are the I/O. Every ``CREATE`` is ``IF NOT EXISTS``, so running the job again
changes nothing; ``ensure_schema`` then compares an existing table with the contract, because
``IF NOT EXISTS`` silently keeps a table that has drifted: a column the contract gained is added,
anything else that differs stops the job with the fix.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config import CassandraSettings, ConfigError
from pipeline.contract import (
    CQL_TYPES,
    DEAD_LETTER_CLUSTERING_KEY,
    DEAD_LETTER_COLUMNS,
    DEAD_LETTER_PARTITION_KEY,
    FIELDS,
    PRIMARY_KEY,
)

if TYPE_CHECKING:
    from cassandra.cluster import Session

log = logging.getLogger(__name__)

# Unquoted CQL identifiers: a letter, then letters, digits or underscores; at most 48 long.
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")


@dataclass(frozen=True)
class TableShape:
    """A table as the pipeline writes it: column name -> CQL type, in order, and its key."""

    columns: Mapping[str, str]
    partition_key: tuple[str, ...]
    clustering_key: tuple[str, ...] = ()

    def primary_key(self) -> str:
        """The ``PRIMARY KEY`` clause's argument, e.g. ``((topic, partition), offset)``."""
        return primary_key(self.partition_key, self.clustering_key)


def primary_key(partition_key: tuple[str, ...], clustering_key: tuple[str, ...]) -> str:
    """``((partition key columns), clustering columns...)``, as ``PRIMARY KEY`` takes it."""
    return f"(({', '.join(partition_key)}){''.join(f', {c}' for c in clustering_key)})"


USERS = TableShape({f.name: CQL_TYPES[f.kind] for f in FIELDS}, (PRIMARY_KEY,))
DEAD_LETTERS = TableShape(
    {c.name: CQL_TYPES[c.kind] for c in DEAD_LETTER_COLUMNS},
    DEAD_LETTER_PARTITION_KEY,
    DEAD_LETTER_CLUSTERING_KEY,
)


class CassandraUnavailable(RuntimeError):
    """Cassandra refused the connection or the login; the message names host, port and user."""


class LoginRefused(CassandraUnavailable):
    """Cassandra answered and refused the credentials: trying again will not help."""


class SchemaMismatch(RuntimeError):
    """An existing table's columns differ from what the pipeline writes."""


def identifier(value: str, variable: str) -> str:
    """``value`` if it is a plain CQL identifier, else ``ConfigError`` naming ``variable``."""
    if not _IDENTIFIER.match(value):
        raise ConfigError(
            f"{variable}={value!r} is not a valid Cassandra name "
            "(a letter, then letters, digits or _; at most 48 characters)"
        )
    return value


def keyspace_cql(keyspace: str, replication_factor: int) -> str:
    """``CREATE KEYSPACE IF NOT EXISTS`` with ``replication_factor`` copies in every data centre."""
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}"
    )


def table_cql(keyspace: str, table: str, shape: TableShape) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with ``shape``'s columns and key."""
    columns = ", ".join(f"{name} {cql_type}" for name, cql_type in shape.columns.items())
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{table} "
        f"({columns}, PRIMARY KEY {shape.primary_key()})"
    )


def schema_statements(settings: CassandraSettings) -> list[str]:
    """The DDL that makes the keyspace and both tables exist, in order."""
    keyspace = identifier(settings.keyspace, "CASSANDRA_KEYSPACE")
    table = identifier(settings.table, "CASSANDRA_TABLE")
    dead_letters = identifier(settings.dead_letter_table, "CASSANDRA_DEAD_LETTER_TABLE")
    return [
        keyspace_cql(keyspace, settings.replication_factor),
        table_cql(keyspace, table, USERS),
        table_cql(keyspace, dead_letters, DEAD_LETTERS),
    ]


def connect(settings: CassandraSettings, connect_timeout: float = 10) -> Session:
    """A session logged in with the configured credentials.

    Raise ``CassandraUnavailable`` naming host, port and user when Cassandra is down,
    unreachable or refuses the login.
    """
    from cassandra import AuthenticationFailed, ProtocolVersion, UnresolvableContactPoints
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
    from cassandra.policies import DCAwareRoundRobinPolicy

    where = f"Cassandra at {settings.host}:{settings.port} as user {settings.username!r}"
    try:
        cluster = Cluster(
            [settings.host],
            port=settings.port,
            auth_provider=PlainTextAuthProvider(settings.username, settings.password),
            # Cassandra 4 and 5 speak v5; naming it spares a downgrade dance and its warnings.
            protocol_version=ProtocolVersion.V5,
            execution_profiles={
                EXEC_PROFILE_DEFAULT: ExecutionProfile(
                    load_balancing_policy=DCAwareRoundRobinPolicy()
                )
            },
            connect_timeout=connect_timeout,
        )
    except UnresolvableContactPoints as exc:
        raise CassandraUnavailable(
            f"cannot connect to {where}: host name does not resolve (check CASSANDRA_HOST)"
        ) from exc
    try:
        return cluster.connect()
    except (NoHostAvailable, AuthenticationFailed) as exc:
        cluster.shutdown()
        errors = getattr(exc, "errors", None) or {}
        detail = "; ".join(str(error) for error in errors.values()) or str(exc)
        if "authentic" in detail.lower() or "password" in detail.lower():
            fix = "check CASSANDRA_USERNAME and CASSANDRA_PASSWORD"
            raise LoginRefused(f"cannot connect to {where}: {detail} ({fix})") from exc
        fix = "is Cassandra up? check CASSANDRA_HOST and CASSANDRA_PORT (`./run.sh status`)"
        raise CassandraUnavailable(f"cannot connect to {where}: {detail} ({fix})") from exc


@dataclass(frozen=True)
class FoundColumn:
    """A column of an existing table, as ``system_schema.columns`` describes it."""

    cql_type: str
    kind: str  # partition_key, clustering or regular
    position: int  # within the partition key or the clustering key


def table_columns(session: Session, keyspace: str, table: str) -> dict[str, FoundColumn]:
    """Column name -> type, kind and key position of an existing table (empty if none)."""
    rows = session.execute(
        "SELECT column_name, type, kind, position FROM system_schema.columns "
        "WHERE keyspace_name = %s AND table_name = %s",
        (keyspace, table),
    )
    return {row.column_name: FoundColumn(row.type, row.kind, row.position) for row in rows}


def check_table(
    found: Mapping[str, FoundColumn], shape: TableShape, where: str, variable: str
) -> list[str]:
    """The columns of ``shape`` that the existing table ``where`` lacks, in contract order.

    Raise ``SchemaMismatch``, naming the column, the table and the fix, when the table has a
    column the contract does not, a column of another type, or another key: Cassandra can add
    a column to a table, not change one. ``variable`` names the table's setting.
    """
    removed = [name for name in found if name not in shape.columns]
    problems = [f"column {name} is not in the contract" for name in removed]
    problems += [
        f"column {name} is {column.cql_type}, the contract says {shape.columns[name]}"
        for name, column in found.items()
        if name in shape.columns and column.cql_type != shape.columns[name]
    ]

    def key(kind: str) -> tuple[str, ...]:
        names = [name for name, column in found.items() if column.kind == kind]
        return tuple(sorted(names, key=lambda name: found[name].position))

    found_key = primary_key(key("partition_key"), key("clustering"))
    if found_key != shape.primary_key():
        problems.append(f"its key is {found_key}, the contract's is {shape.primary_key()}")
    if problems:
        fix = (
            "drop the table (the job re-creates it on start, empty) "
            f"or set {variable} to a new table's name"
        )
        if len(problems) == len(removed):  # only columns to drop
            drops = ", ".join(f"ALTER TABLE {where} DROP {name}" for name in removed)
            fix = f"{drops}; or {fix}"
        else:
            fix = f"Cassandra cannot change a column's type or a table's key: {fix}"
        raise SchemaMismatch(
            f"table {where} does not match the contract: {'; '.join(problems)}. Fix: {fix}"
        )
    return [name for name in shape.columns if name not in found]


def ensure_schema(session: Session, settings: CassandraSettings) -> None:
    """Create the keyspace and both tables if missing, then bring existing tables up to date.

    A column the contract has and an existing table lacks is added (``ALTER TABLE ... ADD``,
    logged). Raise ``SchemaMismatch`` (see ``check_table``) when a table has a column the
    contract does not, a column of another type, or another key; nothing is altered then.
    """
    for statement in schema_statements(settings):
        log.info("cassandra: %s", statement)
        session.execute(statement)
    tables = (
        (settings.table, USERS, "CASSANDRA_TABLE"),
        (settings.dead_letter_table, DEAD_LETTERS, "CASSANDRA_DEAD_LETTER_TABLE"),
    )
    missing: dict[str, list[tuple[str, str]]] = {}
    for table, shape, variable in tables:
        where = f"{settings.keyspace}.{table}"
        found = table_columns(session, settings.keyspace, table)
        missing[where] = [
            (name, shape.columns[name]) for name in check_table(found, shape, where, variable)
        ]
    for where, columns in missing.items():
        for name, cql_type in columns:
            statement = f"ALTER TABLE {where} ADD IF NOT EXISTS {name} {cql_type}"
            log.info(
                "cassandra: %s lacks contract column %s, adding it: %s", where, name, statement
            )
            session.execute(statement)
