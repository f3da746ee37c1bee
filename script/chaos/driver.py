"""The driver: the real DAG through Airflow's API, run after run, paced, whatever is down."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from pipeline import config
from script.airflow_api import FINISHED, AirflowClient, AirflowError
from script.services.airflow import airflow_admin, url
from script.services.standin import standin_url

DAG_ID = config.DAG_ID
TASK_ID = "stream_users"
RETRY_EVERY = 2.0  # seconds between two calls while Airflow's API does not answer
AWAY_BOUND = 600.0  # Airflow's API away this long: the driver stops (the run says what is down)


@dataclass
class Run:
    """One DAG run the driver triggered, as Airflow ended it."""

    run_id: str
    conf: dict[str, Any]
    state: str = "queued"
    tries: int = 0  # the task's attempts (Airflow's retries included)
    sent: int | None = None  # the task's own count, from its return value (a success's)


class Driver:
    """Triggers ``user_automation`` with ``total`` users paced at ``rate`` per second, waits
    for the run to end, and triggers the next, until ``stop``; every call is tried again
    while Airflow's API server (or its database) is away."""

    def __init__(self, total: int, rate: int, log: Any) -> None:
        self.conf = {"api_url": standin_url(), "total": total, "users_per_second": rate}
        self.runs: list[Run] = []
        self.log = log
        self.airflow = AirflowClient(url(), *airflow_admin())
        self.error: str | None = None  # why the driver stopped before it was asked to
        self._stop = threading.Event()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        away = None
        while True:
            try:
                answer = self.airflow.call(method, path, **kwargs)
            except AirflowError as exc:
                if away is None:
                    away = time.monotonic()
                    self.log(f"  driver: {str(exc)[:100]}; trying again every {RETRY_EVERY:.0f}s")
                elif time.monotonic() - away > AWAY_BOUND:
                    raise AirflowError(
                        f"Airflow's API did not answer for {AWAY_BOUND:.0f}s: {str(exc)[:200]}"
                    ) from exc
                self.airflow = AirflowClient(url(), *airflow_admin())  # a new login, too
                time.sleep(RETRY_EVERY)
                continue
            if away is not None:
                self.log(f"  driver: Airflow's API answers again ({time.monotonic() - away:.0f}s)")
            return answer

    def run(self) -> None:
        """Runs one after another until ``stop``, or until Airflow stays away (``error``)."""
        try:
            self._run()
        except AirflowError as exc:
            self.error = str(exc)
            self.log(f"driver: stopped: {exc}")

    def _run(self) -> None:
        self.call("PATCH", f"/dags/{DAG_ID}", json={"is_paused": False})
        while not self._stop.is_set():
            body = {"logical_date": None, "conf": self.conf}
            run = Run(self.call("POST", f"/dags/{DAG_ID}/dagRuns", json=body)["dag_run_id"], {})
            run.conf = dict(self.conf)
            self.runs.append(run)
            self.log(f"driver: triggered {run.run_id}")
            self.wait(run)

    def wait(self, run: Run) -> None:
        path = f"/dags/{DAG_ID}/dagRuns/{run.run_id}"
        while run.state not in FINISHED:
            time.sleep(2)
            run.state = self.call("GET", path)["state"]
        task = self.call("GET", f"{path}/taskInstances/{TASK_ID}")
        run.tries = task["try_number"]
        if run.state == "success":
            entry = self.call("GET", f"{path}/taskInstances/{TASK_ID}/xcomEntries/return_value")
            run.sent = entry["value"].get("sent")
        self.log(f"driver: {run.run_id} {run.state} after {run.tries} attempt(s)")

    def stop(self) -> None:
        """Trigger no more runs; the one under way is waited for by ``run``."""
        self._stop.set()
