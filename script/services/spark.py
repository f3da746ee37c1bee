"""Spark's standalone cluster from the pyspark wheel: a master and SPARK_WORKERS workers, run
when SPARK_MASTER is a `spark://` URL (the cluster topology); the stream job is then submitted
to the master in client mode, as in Compose."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from typing import Any

from pipeline import config
from script.layout import DATA, REPO, STACK_CONF, VENV_BIN
from script.procs import spawn
from script.services.base import Service, address

# What a worker logs once the master has taken it (stack/spark-daemon/log4j2.properties).
REGISTERED = "Successfully registered with master"


def master_address() -> tuple[str, int]:
    """SPARK_MASTER's host and port (spark://HOST:PORT)."""
    master = config.load().stream.master
    host, _, port = master.removeprefix("spark://").partition(":")
    return host, int(port or 7077)


def master_state(timeout: float = 3) -> dict[str, Any] | None:
    """The master's view (its web UI's /json/: workers, cores, applications), None when down."""
    url = f"http://127.0.0.1:{config.load().stack.spark_master_ui_port}/json/"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return json.load(reply)
    except (OSError, ValueError):
        return None


def _daemon_env(memory: str) -> dict[str, str]:
    env = dict(os.environ)
    env["SPARK_CONF_DIR"] = str(STACK_CONF / "spark-daemon")
    env["SPARK_DAEMON_MEMORY"] = memory
    env["SPARK_LOCAL_IP"] = "127.0.0.1"  # UIs and RPC on loopback
    # The executors a worker launches run the job's Python (pipeline/) from this checkout.
    env["PYSPARK_PYTHON"] = sys.executable
    env["PYTHONPATH"] = str(REPO)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


class SparkMaster(Service):
    name = "spark-master"
    timeout = 90

    @property
    def port(self) -> int:
        return master_address()[1]

    @property
    def host(self) -> str:  # type: ignore[override]
        return address(master_address()[0])

    def start(self) -> None:
        spawn(
            self.name,
            [
                str(VENV_BIN / "spark-class"),
                "org.apache.spark.deploy.master.Master",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--webui-port",
                str(config.load().stack.spark_master_ui_port),
            ],
            _daemon_env("256m"),
        )

    def probe(self) -> str | None:
        state = master_state()
        if state is None:
            return f"web UI :{config.load().stack.spark_master_ui_port} not answering yet"
        return None if state.get("status") == "ALIVE" else f"status {state.get('status')}"


class SparkWorker(Service):
    timeout = 90

    def __init__(self, number: int) -> None:
        self.number = number
        self.name = f"spark-worker-{number}"

    def start(self) -> None:
        stack = config.load().stack
        work = DATA / self.name
        work.mkdir(parents=True, exist_ok=True)
        host, port = master_address()
        spawn(
            self.name,
            [
                str(VENV_BIN / "spark-class"),
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                str(stack.spark_worker_cores),
                "--memory",
                stack.spark_worker_memory,
                "--work-dir",
                str(work),
                "--webui-port",
                "0",  # any free port on 127.0.0.1: the master's UI links to it
                f"spark://{address(host)}:{port}",
            ],
            _daemon_env("256m"),
        )

    def probe(self) -> str | None:
        """Ready once it logged that the master took it, since its latest start."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "no log yet"
        since = text[text.rfind(f" starting {self.name}\n") :]
        return None if REGISTERED in since else "not registered with the master yet"
