"""The Spark stream job (spark_stream.py) under its supervisor: restarted when it fails.

`./run.sh stream` starts it; tests and the benchmark spawn jobs of their own with
`spawn_stream_job` (another topic, keyspace or checkpoint).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pipeline import config
from script import supervise
from script.jars import resolve_spark_jars, spark_jars
from script.layout import REPO, STACK_CONF, UMASK, VENV_BIN
from script.procs import pid_file, port_open, read_pid, spawn, stop_tree, supervisor_state
from script.services.base import QUIET_JVM_OPTIONS, Service

# What spark_stream.py logs once it has warmed up and started its query.
READY = "stream job ready"
SUPERVISOR_STATE = supervisor_state("spark-stream")


class StreamJob(Service):
    name = "spark-stream"
    timeout = 180

    @property
    def port(self) -> int:
        """The Spark UI's."""
        return config.load().stream.ui_port

    def download(self) -> Path:
        return resolve_spark_jars()

    def start(self) -> None:
        env = stream_env()
        # Under the supervisor, as every service. A stop signals the JVM alone, as `docker stop`
        # does: it stops after the running batch and takes its children down; a SIGTERM to the
        # whole group could kill the `chmod` of a checkpoint commit and make a batch read twice.
        spawn(self.name, stream_command(env), env, supervisor_options=("--term-leader",))

    def probe(self) -> str | None:
        """Ready once the job has logged READY since this supervisor last started it."""
        try:
            with self.log.open("rb") as text:
                text.seek(max(0, self.log.stat().st_size - 256_000))
                tail = text.read().decode(errors="replace")
        except OSError:
            tail = ""
        this_start = tail[tail.rfind(f" starting {self.name}\n") :]  # spawn's marker
        if READY in this_start[this_start.rfind("supervisor: started") :]:
            return None
        state = supervise.read_state(SUPERVISOR_STATE)
        restarts = f"; restarts {state.restarts}" if state and state.restarts else ""
        warming = "warming up" if port_open(self.port) else f"Spark UI :{self.port} not up yet"
        return f"{warming}{restarts}"

    def stop(self) -> None:
        pid = read_pid(self.name)
        if pid:
            # Only the supervisor is signalled: it stops the job and kills it after its grace.
            stop_tree(self.name, pid, timeout=supervise.STOP_TIMEOUT + 10, leader_only=True)
        pid_file(self.name).unlink(missing_ok=True)

    def note(self) -> str | None:
        """E.g. "spark-stream restarts 2 (last exit 1 at ...)", from the supervisor's state."""
        state = supervise.read_state(SUPERVISOR_STATE)
        return supervise.describe(self.name, state) if state else None


def stream_env() -> dict[str, str]:
    """Environment of the stream job (and of the test suite, which spawns jobs of its own)."""
    # The job logs in as its own role (CASSANDRA_USERNAME); the admin's login is set-up's alone.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASSANDRA_ADMIN_")}
    env["PYTHONPATH"] = str(REPO)
    env["PYSPARK_PYTHON"] = sys.executable
    env["SPARK_CONF_DIR"] = str(STACK_CONF / "spark")  # log4j2.properties
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    # The Spark UI binds to SPARK_LOCAL_IP, else to every interface; the driver's default
    # address (spark.driver.host) is derived from it too.
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    return env


STREAM_JOB = REPO / "spark_stream.py"


def stream_command(env: dict[str, str] | None = None, main: Path = STREAM_JOB) -> list[str]:
    """The spark-submit line of the stream job (or of another ``main`` submitted the same way,
    such as the benchmark's floor query), with the jars resolved into .stack/jars/spark."""
    s = config.load(env).stream
    cluster = []
    if s.master.startswith("spark://"):
        # Client mode, as Compose: the driver here, the executors on the workers, running this
        # checkout's pipeline/ with this venv's Python. One core per task of a batch, one per
        # executor (spread over the workers): the rest stays free for a second job.
        cluster = [
            "--deploy-mode",
            "client",
            "--executor-memory",
            s.executor_memory,
            "--executor-cores",
            "1",
            "--total-executor-cores",
            str(s.batch_partitions),
            "--conf",
            f"spark.executorEnv.PYTHONPATH={REPO}",
            "--conf",
            f"spark.pyspark.python={sys.executable}",
        ]
    return [
        str(VENV_BIN / "spark-submit"),
        "--master",
        s.master,
        *cluster,
        "--jars",
        ",".join(str(j) for j in spark_jars()),
        "--driver-memory",
        config.load(env).stack.spark_driver_memory,
        "--driver-java-options",
        " ".join(QUIET_JVM_OPTIONS),
        "--conf",
        f"spark.ui.port={s.ui_port}",
        # Localhost only: the driver's RPC and block manager ports, and no kill links in the UI.
        "--conf",
        "spark.driver.bindAddress=127.0.0.1",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.ui.killEnabled=false",
        "--conf",
        "spark.sql.shuffle.partitions=4",
        str(main),
    ]


def spawn_stream_job(
    overrides: dict[str, str], log: Path, main: Path = STREAM_JOB
) -> subprocess.Popen:
    """A stream job of its own (tests, benchmark), e.g. on another topic, keyspace, checkpoint."""
    env = {**stream_env(), **overrides}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            stream_command(env, main),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=UMASK,
        )
