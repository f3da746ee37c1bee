"""The local stack: ZooKeeper, Kafka, Cassandra, PostgreSQL and Airflow as plain processes.

`./run.sh COMMAND` lands here (`python -m script`): up, down, status, clean, stream, cqlsh,
airflow, test, bench. The services themselves are in `script/services.py`, the downloads in
`script/jars.py`, process handling in `script/procs.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterable

from pipeline import config
from script.jars import ensure_downloads
from script.layout import CONF, DATA, LOGS, REPO, RUN, STATE, VENV_BIN, StackError, say
from script.procs import memory_kb, pid_file, port_open, read_pid, stop_tree
from script.services import (
    AIRFLOW_COMPONENTS,
    EXTRAS,
    SERVICES,
    STREAM,
    Service,
    airflow_admin,
    airflow_env,
    stream_env,
    stream_restarts,
)


def wait_ready(service: Service) -> None:
    started = time.monotonic()
    last_reason, last_print = "", 0.0
    while True:
        reason = service.probe()
        if reason is None:
            say(f"  {service.name}: ready ({time.monotonic() - started:.0f}s)")
            return
        pid = service.current_pid()
        if pid is None and service.name != "postgres":
            raise StackError(_failure(service, "the process exited"))
        elapsed = time.monotonic() - started
        if elapsed > service.timeout:
            raise StackError(_failure(service, f"not ready after {service.timeout:.0f}s: {reason}"))
        if reason != last_reason or elapsed - last_print > 15:
            say(f"  {service.name}: waiting ({reason}) {elapsed:.0f}s")
            last_reason, last_print = reason, elapsed
        time.sleep(1)


def _failure(service: Service, why: str) -> str:
    port = f" on port {service.port}" if service.port else ""
    tail = ""
    if service.log.exists():
        lines = service.log.read_text(errors="replace").splitlines()[-12:]
        tail = "\n    " + "\n    ".join(lines)
    return f"{service.name}{port} failed: {why}. Log: {service.log}{tail}"


def _port_taken(service: Service) -> str:
    return (
        f"{service.name}: port {service.port} is taken by another process (see "
        f"`ss -ltnp 'sport = :{service.port}'`); stop it or free the port. "
        f"Log: {service.log}"
    )


def start_service(service: Service) -> bool:
    """Start ``service`` unless it already runs, then set it up; True when this call started it."""
    started = _start_unless_running(service)
    if service.set_up:
        service.set_up()
    return started


def _start_unless_running(service: Service) -> bool:
    if service.current_pid():
        if service.complete and not service.complete():
            say(f"{service.name}: starting the parts that are not running")
            service.start()  # skips the live ones
        if service.probe() is None:
            say(f"{service.name}: already running (pid {service.current_pid()})")
            return False
        say(f"{service.name}: running, waiting until ready")
        wait_ready(service)
        return False
    if service.port and port_open(service.port):
        raise StackError(_port_taken(service))
    logs = (
        f"{LOGS.relative_to(STATE.parent)}/airflow-*.log"
        if service.name == "airflow"
        else str(service.log.relative_to(STATE.parent))
    )
    say(f"{service.name}: starting (log {logs})")
    service.start()
    wait_ready(service)
    return True


def stop_service(service: Service) -> None:
    pid = service.current_pid()
    if not pid:
        pid_file(service.name).unlink(missing_ok=True)
        return
    say(f"{service.name}: stopping (pid {pid})")
    if service.stop:
        service.stop()
    else:
        stop_tree(service.name, pid)
        pid_file(service.name).unlink(missing_ok=True)


def up(names: Iterable[str] | None = None) -> list[str]:
    """Start the named services (default: all) in order; return those this call started."""
    wanted = set(names or [s.name for s in SERVICES])
    unknown = wanted - {s.name for s in SERVICES}
    if unknown:
        raise StackError(f"unknown service(s): {', '.join(sorted(unknown))}")
    started_at = time.monotonic()
    for service in SERVICES:  # fail before any download when a port is taken
        if (
            service.name in wanted
            and not service.current_pid()
            and service.port
            and port_open(service.port)
        ):
            raise StackError(_port_taken(service))
    ensure_downloads()
    started = [s.name for s in SERVICES if s.name in wanted and start_service(s)]
    say(f"stack up in {time.monotonic() - started_at:.0f}s; `./run.sh status` for details")
    return started


def down(names: Iterable[str] | None = None) -> None:
    wanted = set(names or [s.name for s in [*SERVICES, *EXTRAS]])
    for service in [*EXTRAS, *reversed(SERVICES)]:
        if service.name in wanted:
            stop_service(service)


def status_rows() -> list[dict[str, object]]:
    rows = []
    for service in [*SERVICES, *EXTRAS]:
        groups = (
            [f"airflow-{c}" for c in AIRFLOW_COMPONENTS]
            if service.name == "airflow"
            else [service.name]
        )
        for name in groups:
            if service.name == "airflow":
                pid = read_pid(name)
                port = 8080 if name == "airflow-api-server" else None
            else:
                pid, port = service.current_pid(), service.port
            if name == "spark-stream":
                port = config.load().stream.ui_port
            pss, rss = memory_kb(pid) if pid else (0, 0)
            log = LOGS / f"{name}.log"
            rows.append(
                {
                    "service": name,
                    "state": "up" if pid else "down",
                    "pid": pid or "-",
                    "port": port or "-",
                    "pss_mb": pss // 1024,
                    "rss_mb": rss // 1024,
                    "log": str(log.relative_to(REPO)) if log.is_relative_to(REPO) else str(log),
                }
            )
    return rows


def status() -> None:
    rows = status_rows()
    header = f"{'SERVICE':<24}{'STATE':<7}{'PID':>8}{'PORT':>7}{'PSS MB':>9}{'RSS MB':>9}  LOG"
    print(header)
    for r in rows:
        print(
            f"{r['service']:<24}{r['state']:<7}{r['pid']!s:>8}{r['port']!s:>7}"
            f"{r['pss_mb']:>9}{r['rss_mb']:>9}  {r['log']}"
        )
    total_pss = sum(int(r["pss_mb"]) for r in rows)
    total_rss = sum(int(r["rss_mb"]) for r in rows)
    print(f"{'total':<46}{total_pss:>9}{total_rss:>9}  (PSS counts shared pages once)")
    restarts = stream_restarts()
    if restarts:
        print(restarts)
    up_now = {r["service"] for r in rows if r["state"] == "up"}
    print()
    for line in pipeline_lines(up_now):
        print(line)


def pipeline_lines(up_now: set[str]) -> list[str]:
    """The pipeline half of `status`: topic, stream progress and lag, rows, last DAG run."""
    import requests
    from cassandra import OperationTimedOut, ReadTimeout
    from cassandra.cluster import NoHostAvailable
    from kafka.errors import KafkaError

    from script import pipeline_status as ps
    from script.airflow_api import AirflowClient, AirflowError

    settings = config.load()
    k, c = settings.kafka, settings.cassandra
    lines = ["PIPELINE"]
    if "kafka" in up_now:
        try:
            progress = ps.stream_progress(settings)
        except (KafkaError, OSError) as exc:
            return [*lines, f"  kafka is not answering ({exc.__class__.__name__})"]
        offsets = ", ".join(f"p{p}={o}" for p, o in sorted(progress.end_offsets.items()))
        lines.append(
            f"  topic {k.topic:<26}{progress.messages:>10,} messages  ({offsets or 'no topic yet'})"
        )
        read = ", ".join(f"p{p}={o}" for p, o in sorted(progress.committed.items()))
        lines.append(
            f"  stream job has read          {progress.messages - progress.lag:>10,}  "
            f"lag {progress.lag:,}  (checkpoint batch {progress.batch}: {read or '-'})"
        )
    else:
        lines.append("  kafka is down: no topic figures")
    if "cassandra" in up_now:
        try:
            cluster, session = ps.cassandra_session(c)
        except NoHostAvailable as exc:
            return [*lines, f"  cassandra is not answering ({exc.__class__.__name__})"]
        try:
            for table in (c.table, c.dead_letter_table):
                try:
                    rows = ps.count_rows(session, c.keyspace, table)
                    shown = "no table yet" if rows is None else f"{rows:,} rows"
                except (ReadTimeout, OperationTimedOut) as exc:  # a status line, not a failure
                    shown = f"count timed out ({exc.__class__.__name__})"
                lines.append(f"  {c.keyspace}.{table:<{28 - len(c.keyspace)}}{shown:>10}")
        finally:
            cluster.shutdown()
    else:
        lines.append("  cassandra is down: no row counts")
    if "airflow-api-server" in up_now:
        admin, password = airflow_admin()
        try:
            run = AirflowClient("http://127.0.0.1:8080", admin, password).last_run(
                "user_automation"
            )
        except (AirflowError, requests.RequestException) as exc:
            run, lines = None, [*lines, f"  last DAG run: unknown ({exc})"]
        if run:
            lines.append(f"  last user_automation run     {run['state']:>10}  {run['dag_run_id']}")
        else:
            lines.append("  last user_automation run     none yet")
    return lines


def clean(everything: bool) -> None:
    down()
    targets = [DATA, LOGS, RUN, CONF] + ([STATE] if everything else [])
    for path in targets:
        if path.exists():
            try:
                shutil.rmtree(path)
            except OSError as exc:
                raise StackError(f"could not remove {path}: {exc}") from exc
    say(
        "removed service data and logs"
        + (
            " and downloads/venv"
            if everything
            else " (downloads and venv kept; --all removes them)"
        )
    )


def cqlsh(extra: list[str]) -> int:
    s = config.load().cassandra
    cmd = [
        str(VENV_BIN / "cqlsh"),
        "--request-timeout=120",
        "-u",
        s.username,
        "-p",
        s.password,
        s.host,
        str(s.port),
        *extra,
    ]
    return subprocess.call(cmd)


def run_tests(pytest_args: list[str]) -> int:
    """Bring the stack up if needed, run pytest, stop what this run started."""
    extras_before = {s.name for s in EXTRAS if s.current_pid()}
    started = up()
    try:
        code = subprocess.call(
            [sys.executable, "-m", "pytest", *pytest_args], cwd=REPO, env=stream_env()
        )
        try:  # the services' memory after the suite, for the record; never the verdict
            status()
        except Exception as exc:  # noqa: BLE001 - reported, and pytest's code stands
            say(f"status after the tests failed: {exc.__class__.__name__}: {exc}")
    finally:
        extras = [s.name for s in EXTRAS if s.name not in extras_before]
        if started:
            say(f"stopping what the test run started: {', '.join(started)}")
            down([*started, *extras])
    if code == 5:
        say("pytest collected no tests: that is a failure here")
        return 1
    return code


USAGE = """usage: ./run.sh [--offline] [--users N] [--seed TEXT]   run the whole pipeline once
       ./run.sh COMMAND
  up [SERVICE...]   start the local stack (postgres zookeeper kafka cassandra airflow)
  down [SERVICE...] stop it (data kept)
  status            services: up/down, pid, port, memory (PSS/RSS), log
  clean [--all]     stop and remove data and logs (--all: also jars and the venv)
  stream [stop]     start (or stop) the Spark stream job, supervised: restarted when it fails
  cqlsh [ARGS]      cqlsh as the configured Cassandra superuser
  airflow [ARGS]    the airflow CLI against the local stack (e.g. airflow dags list)
  test [PYTEST ARGS] run the test suite against the stack (starts and stops what it needs)
  bench [--runs N] [--parts P,...]  latency, sustainable rate, parse, sink, producer, restart
                    and memory figures (medians of N runs); JSON and a chart in .stack/bench/
  jars              resolve the jars only"""


def main(argv: list[str]) -> int:
    command, args = (argv[0], argv[1:]) if argv else ("help", [])
    try:
        if command == "up":
            up(args or None)
        elif command == "down":
            down(args or None)
        elif command == "status":
            status()
        elif command == "clean":
            clean("--all" in args)
        elif command == "stream":
            if args[:1] == ["stop"]:
                stop_service(STREAM)
            else:
                start_service(STREAM)
        elif command == "cqlsh":
            return cqlsh(args)
        elif command == "airflow":
            return subprocess.call([str(VENV_BIN / "airflow"), *args], env=airflow_env())
        elif command == "test":
            return run_tests(args)
        elif command == "bench":
            from script import benchmark

            return benchmark.main(args)
        elif command == "jars":
            for name, path in ensure_downloads().items():
                print(f"{name}: {path}")
        else:
            print(USAGE)
            return 0 if command in ("help", "-h", "--help") else 2
    except (StackError, config.ConfigError) as exc:
        say(f"ERROR: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
