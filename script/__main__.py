"""`./run.sh [COMMAND]` (`python -m script`): the one entry of the local stack's tooling.

Without a command it runs the whole pipeline once (`script/run_pipeline.py`); each command is a
sub-command below. Commands that hand their arguments on (test, cqlsh, airflow, bench,
supervise) take them as they are.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

from pipeline import config
from script import run_pipeline, stack, status, suite, supervise
from script.airflow_api import AirflowError
from script.arguments import Parser, UsageError
from script.layout import LOGS, TOOL_LOG, UMASK, VENV_BIN, StackError, say
from script.services import ALL, STACK, STREAM
from script.services.airflow import airflow_env
from script.services.cassandra import cqlsh_credentials


def cqlsh(extra: list[str]) -> int:
    s = config.cassandra_admin()  # a superuser: the stream job's role may not change the schema
    login = ["--credentials", str(cqlsh_credentials())]  # a password in argv is public
    return subprocess.call(
        [str(VENV_BIN / "cqlsh"), "--request-timeout=120", *login, s.hosts[0], str(s.port), *extra]
    )


def airflow(extra: list[str]) -> int:
    return subprocess.call([str(VENV_BIN / "airflow"), *extra], env=airflow_env())


def interrupt_on_sigterm() -> None:
    """SIGTERM as Ctrl-C, for the commands that run jobs of their own in this process: their
    clean-up runs (side jobs stopped, the user's stream job started again, the results written)
    instead of leaving a Spark job behind."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def bench(extra: list[str]) -> int:
    from script import benchmark

    interrupt_on_sigterm()
    return benchmark.main(extra)


def faults(extra: list[str]) -> int:
    from script.faults import cli

    interrupt_on_sigterm()
    return cli.main(extra)


def chaos(extra: list[str]) -> int:
    from script.chaos import cli

    interrupt_on_sigterm()
    return cli.main(extra)


def worker(extra: list[str]) -> int:
    """`./run.sh worker NAME ARGS`: the benchmark's and the fault runs' own processes."""
    from script.benchmark import classify_rate, write_ceiling
    from script.harness import loadgen

    workers = {
        "loadgen": loadgen.main,
        "classify_rate": classify_rate.main,
        "write_ceiling": write_ceiling.main,
    }
    if not extra or extra[0] not in workers:
        raise StackError(f"./run.sh worker NAME: one of {', '.join(workers)}")
    return workers[extra[0]](extra[1:])


def parser() -> Parser:
    p = Parser(
        prog="./run.sh",
        description="Without a command: set up the local stack, run the pipeline once, report.",
    )
    run_pipeline.add_arguments(p)
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    names = " ".join(s.name for s in STACK)
    for name, help_text in (
        ("up", f"start the local stack or some of it ({names})"),
        ("down", "stop it, the stream job included (data kept)"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("services", nargs="*", metavar="SERVICE")
    commands.add_parser("status", help="services (state, pid, port, PSS/RSS, log) and pipeline")
    clean = commands.add_parser("clean", help="stop and remove data and logs")
    clean.add_argument("--all", action="store_true", help="also the jars and the venv")
    stream = commands.add_parser("stream", help="start (or stop) the Spark stream job, supervised")
    stream.add_argument("action", nargs="?", choices=["start", "stop"], default="start")
    commands.add_parser("jars", help="resolve the jars only")
    for name, help_text in (
        ("test", "the test suite against the stack (starts and stops what it needs)"),
        ("cqlsh", "cqlsh as the Cassandra admin (CASSANDRA_ADMIN_USERNAME)"),
        ("airflow", "the airflow CLI against the local stack (e.g. airflow dags list)"),
        ("bench", "the benchmark (`./run.sh bench --help`)"),
        ("faults", "break things on purpose, count what was lost (`./run.sh faults --help`)"),
        ("chaos", "random faults on every service while the DAG streams (`./run.sh chaos --help`)"),
        ("supervise", "run a command under the supervisor (used by `stream`)"),
        ("worker", "a process of the tools' own: loadgen, classify_rate"),
    ):
        commands.add_parser(name, help=f"{help_text}; arguments passed on", add_help=False)
    return p


PASS_ON = {
    "test": suite.run_tests,
    "cqlsh": cqlsh,
    "airflow": airflow,
    "bench": bench,
    "faults": faults,
    "chaos": chaos,
    "supervise": supervise.main,
    "worker": worker,
}


def check_services(command: str, names: list[str]) -> None:
    """``UsageError`` naming the names ``./run.sh up|down`` does not know."""
    known = [s.name for s in (STACK if command == "up" else ALL)]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"./run.sh {command}: {' '.join(unknown)}: one of {', '.join(known)} is needed"
        )


class _LogFile(logging.FileHandler):
    """A log file made (with its folder) when the first line is written to it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, delay=True)

    def _open(self):  # type: ignore[no-untyped-def]
        Path(self.baseFilename).parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def keep_log() -> None:
    """What our modules log goes to TOOL_LOG, such as a refused call's whole answer (logged at
    INFO); their warnings and errors show on the terminal too, as without a handler."""
    to_file = _LogFile(TOOL_LOG)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    to_terminal = logging.StreamHandler()
    to_terminal.setLevel(logging.WARNING)
    for name in ("script", "pipeline"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(to_file)
        logger.addHandler(to_terminal)


def cassandra_refusal(exc: Exception) -> str | None:
    """One sentence for an error of Cassandra's driver (its whole text goes to the log), naming
    the fix; None when ``exc`` is not the driver's."""
    if type(exc).__module__.partition(".")[0] != "cassandra":
        return None
    logging.getLogger("script").info("Cassandra's driver: %r", exc)
    s = config.load().cassandra
    name, text = type(exc).__name__, str(exc)
    first = text.strip().splitlines()[0][:200] if text.strip() else name
    if "authentic" in text.lower() or "credentials" in text.lower():
        why = f"refused the login of {s.username!r}; check {s.login_variables}"
    elif name == "Unauthorized":  # its text names the role: the admin's or the stream job's
        why = f"refused a query that lacks the right ({first}); `./run.sh up` grants the rights"
    elif name in ("NoHostAvailable", "OperationTimedOut") or name.endswith("Timeout"):
        why = f"did not answer ({name}): is it up? `./run.sh status`, {LOGS}/cassandra.log"
    else:
        why = f"refused a query: {first}"
    return f"Cassandra at {s.host}:{s.port} {why}; its whole answer is in {TOOL_LOG}"


def main(argv: list[str]) -> int:
    """Run a command; 2 when its command line or a setting is refused (before it starts
    anything), 1 when a step fails, else what the command returns."""
    try:
        p = parser()
        args, extra = p.parse_known_args(argv)
        if extra and args.command not in PASS_ON:
            p.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command in ("up", "down"):
            check_services(args.command, args.services)
        config.load()  # every setting, by its rule, before anything starts
        os.umask(UMASK)  # what any command writes is the user's alone (`up` fixes what is there)
        if args.command not in ("supervise", "worker"):  # they log as their own processes
            keep_log()
        if args.command is None:
            return run_pipeline.run(args)
        if args.command in PASS_ON:
            return PASS_ON[args.command](extra)
        if args.command == "up":
            stack.up(args.services or None)
        elif args.command == "down":
            stack.down(args.services or None)
        elif args.command == "status":
            status.show()
        elif args.command == "clean":
            stack.clean(args.all)
        elif args.command == "stream":
            (stack.stop_service if args.action == "stop" else stack.start_service)(STREAM)
        elif args.command == "jars":
            for name, path in stack.downloads().items():
                print(f"{name}: {path}")
    except UsageError as exc:  # the line names the command (a pass-on command's own too)
        print(exc, file=sys.stderr)
        return 2
    except config.ConfigError as exc:
        print(f"./run.sh: {exc}", file=sys.stderr)
        return 2
    except (StackError, AirflowError) as exc:
        say(f"ERROR: {exc}")
        return 1
    except Exception as exc:
        refused = cassandra_refusal(exc)
        if refused is None:
            raise
        say(f"ERROR: {refused}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
