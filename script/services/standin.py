"""The randomuser-compatible stand-in (`standin/`): offline runs and the benchmark use it."""

from __future__ import annotations

import sys

from pipeline import config
from script.procs import spawn
from script.services.airflow import users_api
from script.services.base import Service
from script.services.stream import stream_env


def port() -> int:
    return config.load().stack.standin_port


def standin_url() -> str:
    return f"http://127.0.0.1:{port()}/api/"


def pages_url(api_url: str) -> str:
    """The stand-in's render-ahead endpoint (``POST``/``DELETE /_pages``) beside ``api_url``."""
    return api_url.split("/api/")[0] + "/_pages"


def render_ahead(api_url: str, seed: str, results: int, pages: list[int]) -> int:
    """Have the stand-in at ``api_url`` render ``pages`` of ``seed`` (``results`` users each)
    now and serve them from memory until ``drop_rendered``, as randomuser.me renders on its
    own servers: a run then spends this machine's cores on the pipeline alone. Their bytes."""
    import requests

    spec = {"seed": seed, "results": results, "pages": pages}
    reply = requests.post(pages_url(api_url), json=spec, timeout=600)
    reply.raise_for_status()
    return int(reply.json()["bytes"])


def drop_rendered(api_url: str) -> None:
    """Free the pages ``render_ahead`` had the stand-in keep."""
    import requests

    requests.delete(pages_url(api_url), timeout=30).raise_for_status()


class StandIn(Service):
    name = "randomuser-standin"
    timeout = 30

    @property
    def port(self) -> int:
        return port()

    def start(self) -> None:
        command = [sys.executable, "-m", "standin"]
        spawn(self.name, [*command, "--host", "127.0.0.1", "--port", str(self.port)], stream_env())

    def wanted_with_stack(self) -> bool:
        """When Airflow's runs use it (the last `./run.sh` chose it), it runs with the stack."""
        return users_api() == standin_url()

    def probe(self) -> str | None:
        import requests

        try:
            requests.get(standin_url(), params={"results": 1}, timeout=3).raise_for_status()
        except requests.RequestException as exc:
            return f"no answer on :{self.port} ({exc.__class__.__name__})"
        return None
