"""The Cassandra side of the pipeline: the keyspace, the tables and the stream job's role.

The tables (users, dead letters, and the job's warm-up scratch table shaped as users) are
derived from ``pipeline.contract``; the DDL builders are pure, ``connect``,
``set_up`` and ``check_schema`` are the I/O. Two logins, two jobs:

- set-up (``set_up``, logged in as the admin, ``CASSANDRA_ADMIN_USERNAME``): creates the
  keyspace and its tables, adds a column the contract gained to an existing table, and makes
  the stream job's role (``CASSANDRA_USERNAME``) with its password and exactly SELECT and
  MODIFY on the keyspace. Every step is idempotent: the local stack runs it on every
  ``./run.sh up``, Compose's one-shot ``cassandra-init`` on every ``up``
  (``python -m pipeline.cassandra_schema``).
- the stream job (``check_schema``, logged in as its role): only checks that the tables have
  the contract's columns, and stops with the fix when set-up has not run.

``IF NOT EXISTS`` silently keeps a table that has drifted, so set-up compares an existing table
with the contract: a column the contract gained is added, anything else that differs stops it
with the fix.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from pipeline import config
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


@dataclass(frozen=True)
class TableShape:
    """A table as the pipeline writes it: column name -> CQL type, in order, and its key."""

    columns: Mapping[str, str]
    partition_key: tuple[str, ...]
    clustering_key: tuple[str, ...] = ()
    options: str = ""  # a ``WITH`` clause's options, e.g. ``default_time_to_live = 3600``

    def primary_key(self) -> str:
        """The ``PRIMARY KEY`` clause's argument, e.g. ``((topic, partition), offset)``."""
        return primary_key(self.partition_key, self.clustering_key)


def primary_key(partition_key: tuple[str, ...], clustering_key: tuple[str, ...]) -> str:
    """``((partition key columns), clustering columns...)``, as ``PRIMARY KEY`` takes it."""
    return f"(({', '.join(partition_key)}){''.join(f', {c}' for c in clustering_key)})"


USERS = TableShape({f.name: CQL_TYPES[f.kind] for f in FIELDS}, (PRIMARY_KEY,))
# The stream job's warm-up writes synthetic users here (SPARK_WARM_UP_MESSAGES): the users'
# columns, each row gone an hour after it was written (and its tombstone at the next
# compaction: nobody reads or repairs this table).
WARM_UP = replace(USERS, options="default_time_to_live = 3600 AND gc_grace_seconds = 0")
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


class SchemaMissing(RuntimeError):
    """A table or a contract column is not there yet: set-up has not run since it changed."""


# What set-up tells a job that found no schema to run (the local stack, then Compose).
RUN_SET_UP = (
    "run the set-up, which creates and updates the schema with the admin login: "
    "`./run.sh up` (local stack) or `docker compose up cassandra-init` (Compose)"
)

# The only permissions the stream job's role holds: read and write rows of the keyspace's
# tables (MODIFY is INSERT, UPDATE, DELETE and TRUNCATE). The connector reads the system
# tables it needs (system.local, system.peers, system_schema) with any login.
WRITER_PERMISSIONS = ("SELECT", "MODIFY")

# Seconds a schema or role statement may take before the driver gives up on it (its default
# is 10 s). A schema change writes and flushes the schema tables and is sent to every node;
# on a busy ring of three nodes (CI: the faults' scenarios, right after a node came back) a
# CREATE KEYSPACE took longer than 10 s. Every statement of set-up is idempotent: a timed-out
# one is done again by the next `./run.sh up`.
SCHEMA_TIMEOUT = 120.0


def identifier(value: str, variable: str) -> str:
    """``value`` if it is a plain CQL identifier (the rule of ``variable`` in the settings
    table), else ``ConfigError`` naming ``variable``."""
    return str(config.checked(variable, value))


def keyspace_cql(keyspace: str, replication_factor: int) -> str:
    """``CREATE KEYSPACE IF NOT EXISTS`` with ``replication_factor`` copies in every data centre."""
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = "
        f"{{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}"
    )


def table_cql(keyspace: str, table: str, shape: TableShape) -> str:
    """``CREATE TABLE IF NOT EXISTS`` with ``shape``'s columns and key."""
    columns = ", ".join(f"{name} {cql_type}" for name, cql_type in shape.columns.items())
    options = f" WITH {shape.options}" if shape.options else ""
    return (
        f"CREATE TABLE IF NOT EXISTS {keyspace}.{table} "
        f"({columns}, PRIMARY KEY {shape.primary_key()}){options}"
    )


def schema_statements(settings: CassandraSettings) -> list[str]:
    """The DDL that makes the keyspace and its tables (``TABLES``) exist, in order."""
    keyspace = identifier(settings.keyspace, "CASSANDRA_KEYSPACE")
    return [
        keyspace_cql(keyspace, settings.replication_factor),
        *(
            table_cql(keyspace, identifier(getattr(settings, attribute), variable), shape)
            for attribute, shape, variable in TABLES
        ),
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
            settings.hosts,
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
        detail = connect_failure(exc)
        if "authentic" in detail.lower() or "password" in detail.lower():
            fix = f"check {settings.login_variables}"
            raise LoginRefused(f"cannot connect to {where}: {detail} ({fix})") from exc
        fix = "is Cassandra up? check CASSANDRA_HOST and CASSANDRA_PORT (`./run.sh status`)"
        raise CassandraUnavailable(f"cannot connect to {where}: {detail} ({fix})") from exc


def connect_failure(exc: Exception) -> str:
    """What the driver says went wrong: each host's error when it could not open the control
    connection (``errors`` maps host to error), or its message when the control connection
    opened but no host's pool did (``errors`` is then a list of hosts: Cassandra still
    starting, its logins timing out; seen right after a restart)."""
    errors = getattr(exc, "errors", None)
    found = errors.values() if isinstance(errors, Mapping) else ()
    return "; ".join(str(error) for error in found) or str(exc)


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
            f"drop the table (set-up re-creates it, empty) or set {variable} to a new table's name"
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


# The keyspace's tables: the settings' attribute that names each, its shape, the variable.
TABLES = (
    ("table", USERS, "CASSANDRA_TABLE"),
    ("dead_letter_table", DEAD_LETTERS, "CASSANDRA_DEAD_LETTER_TABLE"),
    ("warm_up_table", WARM_UP, "CASSANDRA_TABLE"),  # named after the users' table
)


def ensure_schema(session: Session, settings: CassandraSettings) -> list[str]:
    """Create the keyspace and its tables if missing, then bring existing tables up to date;
    the keyspaces whose replication it changed (see ``replicate``).

    A column the contract has and an existing table lacks is added (``ALTER TABLE ... ADD``,
    logged). Raise ``SchemaMismatch`` (see ``check_table``) when a table has a column the
    contract does not, a column of another type, or another key; nothing is altered then.
    """
    for statement in schema_statements(settings):
        log.info("cassandra: %s", statement)
        session.execute(statement, timeout=SCHEMA_TIMEOUT)
    altered = replicate(session, settings)
    missing: dict[str, list[tuple[str, str]]] = {}
    for attribute, shape, variable in TABLES:
        table = getattr(settings, attribute)
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
            session.execute(statement, timeout=SCHEMA_TIMEOUT)
    return altered


def replication_factor(session: Session, keyspace: str) -> int:
    """The replicas per data centre of ``keyspace`` (the largest of its data centres'), 0 when
    it does not exist."""
    row = session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", [keyspace]
    ).one()
    if row is None:
        return 0
    counts = [int(v) for k, v in row.replication.items() if k != "class" and v.isdigit()]
    return max(counts, default=0)


def replication_cql(session: Session, replicas: int) -> str:
    """``replicas`` in each data centre the cluster has, named: on a keyspace that already
    names its data centres, ``'replication_factor': N`` changes nothing (Cassandra expands it
    only into data centres the keyspace does not name yet)."""
    centres = sorted({h.datacenter for h in session.cluster.metadata.all_hosts() if h.datacenter})
    counts = "".join(f", '{centre}': {replicas}" for centre in centres) or (
        f", 'replication_factor': {replicas}"
    )
    return f"{{'class': 'NetworkTopologyStrategy'{counts}}}"


def replicate(session: Session, settings: CassandraSettings) -> list[str]:
    """Give the keyspace, and ``system_auth`` (the roles: a login must survive a node down),
    ``settings.replication_factor`` replicas where they have another number (``system_auth``
    only ever more, one replica at a time, its rows copied at each step:
    ``copy_auth_to_every_replica``). Returns the keyspaces altered: their existing rows reach
    the new replicas by a repair (``nodetool repair KEYSPACE``), which the local stack runs.

    Why one at a time: a node reads a role at LOCAL_QUORUM. Straight from 1 replica to 3, two
    replicas of a role's row lack it; a node that asks those two knows the admin as nobody and
    refuses every query of it, so no read through CQL can copy the row (a CI run saw one node
    refuse for 120 s). With only the newest replica lacking a row, every quorum (2 or more)
    includes a replica that has it: the read finds the role and copies it (read repair)."""
    altered = []
    wanted = settings.replication_factor
    for keyspace in (settings.keyspace, "system_auth"):
        have = replication_factor(session, keyspace)
        if have == wanted or (keyspace == "system_auth" and have >= wanted):
            continue
        steps = range(max(have, 1) + 1, wanted + 1) if keyspace == "system_auth" else [wanted]
        for replicas in steps:
            statement = f"ALTER KEYSPACE {keyspace} WITH replication = " + replication_cql(
                session, replicas
            )
            log.warning(
                "cassandra: keyspace %s has %d replica(s), CASSANDRA_REPLICATION_FACTOR=%d: %s "
                "(`nodetool repair %s` copies the rows it has to the new replicas)",
                keyspace,
                have,
                wanted,
                statement,
                keyspace,
            )
            session.execute(statement, timeout=SCHEMA_TIMEOUT)
            if keyspace == "system_auth":
                copy_auth_to_every_replica(session)
            have = replicas
        altered.append(keyspace)
    return altered


def copy_auth_to_every_replica(session: Session, within: float = 120) -> None:
    """Right after ``system_auth`` got a replica more, its rows (roles, grants) are not on it
    yet, and a node may have cached the admin as unknown. Once every node has the new
    replication (schema agreement), read every table of it at consistency ALL through each
    node in turn: that makes Cassandra write what a replica lacks to it (blocking read
    repair), and a read a node answers shows that it knows the admin as a superuser again.
    A node that refuses (its auth caches expire within seconds) is asked again until
    ``within`` seconds have passed, then ``CassandraUnavailable`` names the node and the
    fix."""
    from cassandra import ConsistencyLevel, DriverException
    from cassandra.cluster import NoHostAvailable
    from cassandra.query import SimpleStatement

    cluster = session.cluster
    if not cluster.control_connection.wait_for_schema_agreement(wait_time=within):
        log.warning("cassandra: the nodes do not agree on the schema yet; copying anyway")
    deadline = time.monotonic() + within
    tables = sorted(cluster.metadata.keyspaces["system_auth"].tables)
    for host in sorted(cluster.metadata.all_hosts(), key=lambda h: str(h.endpoint)):
        for table in tables:
            query = SimpleStatement(
                f"SELECT * FROM system_auth.{table}", consistency_level=ConsistencyLevel.ALL
            )
            while True:
                try:
                    for _ in session.execute(query, timeout=30, host=host):
                        pass
                    break
                except (DriverException, NoHostAvailable) as exc:
                    if time.monotonic() > deadline:
                        raise CassandraUnavailable(
                            f"node {host.endpoint} still refuses to read system_auth.{table} "
                            f"at ALL {within:.0f} s after its replication changed ({exc}): is "
                            "every node up (`./run.sh status`)? `./run.sh up` tries again"
                        ) from exc
                    log.info(
                        "cassandra: reading system_auth.%s at ALL through %s again (%s)",
                        table,
                        host.endpoint,
                        exc,
                    )
                    time.sleep(1)


def check_schema(session: Session, settings: CassandraSettings) -> None:
    """What the stream job does instead of creating: its tables are there with the contract's
    columns, or ``SchemaMissing`` (a table or column set-up has not made yet, naming the fix)
    or ``SchemaMismatch`` (see ``check_table``). Reads ``system_schema`` only."""
    for attribute, shape, variable in TABLES:
        table = identifier(getattr(settings, attribute), variable)
        where = f"{settings.keyspace}.{table}"
        found = table_columns(session, settings.keyspace, table)
        if not found:
            raise SchemaMissing(f"table {where} does not exist ({variable}): {RUN_SET_UP}")
        lacking = check_table(found, shape, where, variable)
        if lacking:
            raise SchemaMissing(
                f"table {where} lacks the contract's column(s) {', '.join(lacking)}: {RUN_SET_UP}"
            )


def _quoted(password: str) -> str:
    """``password`` as a CQL string literal (role statements take no bind markers)."""
    return "'" + password.replace("'", "''") + "'"


def admin_role_cql(username: str, password: str) -> str:
    """What, run as cassandra/cassandra, gives the configured admin its login and password."""
    if username == "cassandra":
        return f"ALTER ROLE cassandra WITH PASSWORD = {_quoted(password)}"
    role = identifier(username, "CASSANDRA_ADMIN_USERNAME")
    return (
        f'CREATE ROLE IF NOT EXISTS "{role}" WITH SUPERUSER = true AND LOGIN = true '
        f"AND PASSWORD = {_quoted(password)}"
    )


def writer_role_statements(writer: CassandraSettings) -> list[str]:
    """The CQL that makes ``writer.username`` a login with ``writer.password`` and
    ``WRITER_PERMISSIONS`` on ``writer.keyspace``: created if missing, its password and
    attributes set again, so a changed password takes effect. Holds the password: never log
    these."""
    role = f'"{identifier(writer.username, "CASSANDRA_USERNAME")}"'
    keyspace = identifier(writer.keyspace, "CASSANDRA_KEYSPACE")
    password = _quoted(writer.password)
    return [
        f"CREATE ROLE IF NOT EXISTS {role} WITH LOGIN = true AND PASSWORD = {password}",
        f"ALTER ROLE {role} WITH PASSWORD = {password} AND LOGIN = true AND SUPERUSER = false",
        *(f"GRANT {p} ON KEYSPACE {keyspace} TO {role}" for p in WRITER_PERMISSIONS),
    ]


# Data resources as LIST PERMISSIONS names them, and as GRANT and REVOKE name them.
_DATA_RESOURCE = re.compile(r"^<(all keyspaces|keyspace (\w+)|table (\w+\.\w+))>$")


def extra_permissions(writer: CassandraSettings, granted: list[tuple[str, str]]) -> list[str]:
    """REVOKE statements for what ``granted`` (resource, permission), as ``LIST ALL
    PERMISSIONS OF`` the role shows it, holds on data beyond ``WRITER_PERMISSIONS`` on
    ``writer.keyspace``: another keyspace, a table, all keyspaces, or CREATE, ALTER, DROP..."""
    role = f'"{writer.username}"'
    wanted = {(f"<keyspace {writer.keyspace}>", p) for p in WRITER_PERMISSIONS}
    revokes = []
    for resource, permission in granted:
        found = _DATA_RESOURCE.match(resource)
        if found is None or (resource, permission) in wanted:
            continue
        _, keyspace, table = found.groups()
        target = (
            f"KEYSPACE {keyspace}" if keyspace else f"TABLE {table}" if table else "ALL KEYSPACES"
        )
        revokes.append(f"REVOKE {permission} ON {target} FROM {role}")
    return revokes


def set_up(session: Session, writer: CassandraSettings) -> list[str]:
    """Run as the admin (``session``): the schema (``ensure_schema``), then the stream job's
    role ``writer.username`` with ``writer.password`` and only SELECT and MODIFY on the
    keyspace: any other permission on data it holds is taken back. Idempotent.
    ``ConfigError`` when the writer is the admin itself."""
    config.check_writer(writer.username, getattr(session.cluster.auth_provider, "username", None))
    altered = ensure_schema(session, writer)
    for statement in writer_role_statements(writer):
        as_admin(session, statement)
    rows = as_admin(session, f'LIST ALL PERMISSIONS OF "{writer.username}" NORECURSIVE')
    for statement in extra_permissions(writer, [(r.resource, r.permission) for r in rows]):
        log.warning("cassandra: role %s needs no more than this: %s", writer.username, statement)
        as_admin(session, statement)
    log.info(
        "cassandra: role %s may log in and %s rows of keyspace %s, nothing else",
        writer.username,
        " and ".join(WRITER_PERMISSIONS),
        writer.keyspace,
    )
    return altered


def as_admin(session: Session, statement: str, within: float = 120) -> Any:
    """``statement`` run as the admin. On a ring of several nodes, a node may still hold the
    admin as unknown in its roles cache for seconds after ``system_auth`` changed (CI: "User
    cassandra has no AUTHORIZE permission" on the GRANT after the ALTER ROLE had passed on
    another node): a refusal there is asked again until ``within`` seconds have passed, then
    raised. One node has no such window: its refusal is raised at once. The statement may hold
    a password: it is never logged."""
    from cassandra import Unauthorized

    deadline = time.monotonic() + within
    while True:
        try:
            return session.execute(statement, timeout=SCHEMA_TIMEOUT)
        except Unauthorized as exc:
            if len(session.cluster.metadata.all_hosts()) < 2 or time.monotonic() > deadline:
                raise
            log.info("cassandra: a node does not know the admin yet (%s); asking again", exc)
            time.sleep(1)


def admin_session(admin: CassandraSettings) -> Session:
    """A session as the admin. A fresh node knows only cassandra/cassandra: when the admin's
    login is refused and differs from that, give it its password (``admin_role_cql``) as
    cassandra/cassandra first."""
    try:
        return connect(admin)
    except LoginRefused:
        if (admin.username, admin.password) == ("cassandra", "cassandra"):
            raise
    default = connect(replace(admin, username="cassandra", password="cassandra"))
    try:
        default.execute(admin_role_cql(admin.username, admin.password))
    finally:
        default.cluster.shutdown()
    log.info("cassandra: admin %s given its password (%s)", admin.username, admin.login_variables)
    return connect(admin)


def main() -> int:
    """``python -m pipeline.cassandra_schema``: set-up as the admin (Compose's cassandra-init).

    Exit 0 when done, 1 when Cassandra is not reachable (worth another try), 2 when a setting,
    the login or an existing table is wrong (the message names the fix).
    """
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        writer = config.load().cassandra
        session = admin_session(config.cassandra_admin())
        try:
            set_up(session, writer)
        finally:
            session.cluster.shutdown()
    except (ConfigError, LoginRefused, SchemaMismatch) as exc:
        log.error("%s", exc)
        return 2
    except CassandraUnavailable as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
