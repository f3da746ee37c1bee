"""Cassandra 5.0: one node per CASSANDRA_HOST (one, or three in the cluster topology), the
first the seed. The seed's probe also gives the configured admin its password; the last node's
set-up, once the ring is complete, creates the schema and the stream job's least-privilege role
(pipeline/cassandra_schema.py) and repairs what a replication change left behind.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Mapping
from pathlib import Path

from pipeline import cassandra_schema, config
from script.jars import resolve_service_jars
from script.layout import CONF, DATA, JARS, LOGS, STACK_CONF, StackError, say, versions
from script.procs import port_open, spawn, write_secret
from script.services.base import QUIET_JVM_OPTIONS, Service, address, java, render


class Cassandra(Service):
    timeout = 240

    def __init__(self, node: int = 1) -> None:
        self.node = node  # 1: the seed
        self.name = "cassandra" if node == 1 else f"cassandra-{node}"

    @property
    def port(self) -> int:
        return config.load().cassandra.port

    @property
    def host(self) -> str:  # type: ignore[override]
        return address(config.load().cassandra.hosts[self.node - 1])

    @property
    def jmx_port(self) -> int:
        return config.load().stack.cassandra_jmx_port + self.node - 1

    @property
    def last(self) -> bool:
        """The last node of CASSANDRA_HOST: its set-up is the ring's."""
        return self.node == len(config.load().cassandra.hosts)

    def download(self) -> Path:
        version = versions()["CASSANDRA_VERSION"]
        return resolve_service_jars("cassandra", "org.apache.cassandra", "cassandra-all", version)

    def start(self) -> None:
        (DATA / self.name).mkdir(parents=True, exist_ok=True)
        heap = config.load().stack.cassandra_heap
        yaml = render(
            "cassandra.yaml",
            f"{self.name}.yaml",
            cassandra_port=self.port,
            host=self.host,
            seed=address(config.load().cassandra.hosts[0]),
        )
        spawn(
            self.name,
            [
                java(),
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-Xss256k",
                *jvm_options(),
                *QUIET_JVM_OPTIONS,
                f"-Dcassandra.config=file://{yaml}",
                f"-Dcassandra.storagedir={DATA / self.name}",
                f"-Dcassandra.logdir={LOGS}",
                f"-Dlogback.configurationFile={STACK_CONF / 'cassandra-logback.xml'}",
                "-Dcassandra-foreground=yes",
                "-Dcassandra.skip_wait_for_gossip_to_settle=0",
                "-Dcassandra.superuser_setup_delay_ms=0",
                # A joining node waits this long for the ring's news (default 30 s): loopback.
                "-Dcassandra.ring_delay_ms=5000",
                # Its clock for timeouts ticks every 2 ms by default, a third of an idle node's
                # CPU; 100 ms is still far finer than any timeout it serves (seconds), and no
                # write's timestamp comes from it.
                "-Dcassandra.approximate_time_precision_ms=100",
                f"-Dcassandra.jmx.local.port={self.jmx_port}",
                "-cp",
                f"{JARS / 'cassandra'}/*",
                "org.apache.cassandra.service.CassandraDaemon",
            ],
        )

    def probe(self) -> str | None:
        from cassandra.cluster import NoHostAvailable

        s = config.cassandra_admin()
        if not port_open(s.port, self.host):
            return f"CQL port {self.host}:{s.port} not open yet"
        if not self.last:
            # A node opens CQL once it has joined the ring. A login may need a quorum of the
            # replicas of system_auth (the default superuser's does), which the nodes after it
            # make: the last node's probe logs in.
            return None
        try:
            _cql(self.host, s.username, s.password, "SELECT release_version FROM system.local")
            return None
        except NoHostAvailable as exc:
            reason = str(exc)
        # A fresh ring only knows cassandra/cassandra: give the configured admin its password.
        if (s.username, s.password) != ("cassandra", "cassandra"):
            try:
                _cql(
                    self.host,
                    "cassandra",
                    "cassandra",
                    cassandra_schema.admin_role_cql(s.username, s.password),
                )
                say(f"  cassandra: admin {s.username!r} set up ({s.login_variables})")
                return "admin just configured"
            except NoHostAvailable as exc:
                reason += f"; setting up the role as cassandra/cassandra failed too: {exc}"
        return f"authenticated query as {s.username!r} failed ({reason[:300]})"

    def set_up(self) -> None:
        """The last node's, once the ring is complete: as the admin, the keyspace and tables,
        and the stream job's role with only read and write on the keyspace (idempotent; a
        changed CASSANDRA_PASSWORD is applied); a repair of each keyspace whose replication it
        changed (`system_auth` on a new ring)."""
        if not self.last:
            return
        writer = config.load().cassandra
        try:
            session = cassandra_schema.connect(config.cassandra_admin())
            try:
                altered = cassandra_schema.set_up(session, writer)
            finally:
                session.cluster.shutdown()
        except (
            config.ConfigError,
            cassandra_schema.CassandraUnavailable,
            cassandra_schema.SchemaMismatch,
        ) as exc:
            raise StackError(f"cassandra: set-up failed: {exc}") from exc
        # The roles' rows reach every node once after the ring grew (a repair that failed or
        # was cut short is made good by the next `up`).
        repaired = DATA / self.name / "system_auth.repaired"
        if self.node > 1 and not repaired.exists():
            altered = sorted({*altered, "system_auth"})
        for keyspace in altered:
            self.nodetool("repair", keyspace)
        if self.node > 1:
            repaired.touch()
        say(
            f"  cassandra: keyspace {writer.keyspace} is there ({writer.replication_factor} "
            f"replica(s)); the stream job's role {writer.username!r} may only read and write "
            "its rows"
        )

    def hints_held(self) -> dict[str, int] | None:
        """As the admin, on this node alone: hint files it holds for each other node (by
        address), for when that node is back; None when this node does not answer."""
        from cassandra import DriverException
        from cassandra.cluster import NoHostAvailable

        s = config.cassandra_admin()
        query = "SELECT address, files FROM system_views.pending_hints"
        try:
            rows = _cql(self.host, s.username, s.password, query)
        except (DriverException, NoHostAvailable, OSError):
            return None
        return {str(r.address): r.files or 0 for r in rows}

    def nodetool(self, *arguments: str, timeout: float = 300) -> str:
        """`nodetool ARGUMENTS` against this node (its JMX port); its output, or StackError."""
        command = [
            java(),
            "-Xmx128m",
            *(o for o in jvm_options() if o.startswith("--add-")),
            f"-Duser.home={DATA / self.name}",  # nodetool keeps its history there
            "-cp",
            f"{JARS / 'cassandra'}/*",
            "org.apache.cassandra.tools.NodeTool",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.jmx_port),
            *arguments,
        ]
        say(f"  {self.name}: nodetool {' '.join(arguments)}")
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode:
            raise StackError(
                f"{self.name}: nodetool {' '.join(arguments)} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout).strip()[-600:]}"
            )
        return done.stdout


def jvm_options() -> list[str]:
    """Cassandra's JVM options for Java 17 (stack/cassandra-jvm17.options)."""
    return [
        line.strip()
        for line in (STACK_CONF / "cassandra-jvm17.options").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def cqlsh_credentials() -> Path:
    """cqlsh's credentials file (`--credentials`) for the Cassandra admin, 0600 in
    `.stack/conf`: cqlsh reads the password from it instead of from its command line."""
    s = config.cassandra_admin()
    path = CONF / "cqlsh-credentials"
    write_secret(path, f"[plain_text_auth]\nusername = {s.username}\npassword = {s.password}\n")
    return path


def side_role(keyspace: str) -> str:
    """The role of a stream job of its own on ``keyspace`` (see ``set_up_side_keyspace``)."""
    return f"w_{keyspace}"[:48]


def set_up_side_keyspace(overrides: Mapping[str, str]) -> dict[str, str]:
    """Set-up for a stream job of its own (tests, benchmark) on the keyspace ``overrides`` name:
    the schema, and a role of its own with a fresh password, so the pipeline's writer keeps
    exactly its grants. Returns the login to add to the job's environment."""
    env = {**os.environ, **overrides}
    keyspace = config.load(env).cassandra.keyspace
    login = {"CASSANDRA_USERNAME": side_role(keyspace), "CASSANDRA_PASSWORD": secrets.token_hex(16)}
    session = cassandra_schema.connect(config.cassandra_admin(env))
    try:
        cassandra_schema.set_up(session, config.load({**env, **login}).cassandra)
    finally:
        session.cluster.shutdown()
    return login


def drop_side_keyspace(overrides: Mapping[str, str]) -> None:
    """Drop what ``set_up_side_keyspace`` made: the keyspace and its role."""
    env = {**os.environ, **overrides}
    keyspace = cassandra_schema.identifier(
        config.load(env).cassandra.keyspace, "CASSANDRA_KEYSPACE"
    )
    session = cassandra_schema.connect(config.cassandra_admin(env))
    within = cassandra_schema.SCHEMA_TIMEOUT
    try:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=within)
        session.execute(f'DROP ROLE IF EXISTS "{side_role(keyspace)}"', timeout=within)
    finally:
        session.cluster.shutdown()


def _cql(host: str, username: str, password: str, *queries: str) -> list:
    """``queries`` on the node at ``host`` alone; the rows of the last."""
    from cassandra.auth import PlainTextAuthProvider
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import WhiteListRoundRobinPolicy

    s = config.load().cassandra
    only = ExecutionProfile(load_balancing_policy=WhiteListRoundRobinPolicy([host]))
    cluster = Cluster(
        [host],
        port=s.port,
        protocol_version=5,
        connect_timeout=3,
        auth_provider=PlainTextAuthProvider(username, password),
        execution_profiles={EXEC_PROFILE_DEFAULT: only},
    )
    try:
        session = cluster.connect()
        rows: list = []
        for query in queries:
            rows = list(session.execute(query, timeout=10))
        return rows
    finally:
        cluster.shutdown()
