"""The bundled randomuser.me stand-in answers like the facts sheet says the real API does."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from standin import MAX_RESULTS, TOP_LEVEL_FIELDS, StandIn, generate_users, response_body

REPO = Path(__file__).resolve().parents[1]
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server


def get(standin: StandIn, **params: Any) -> requests.Response:
    response = requests.get(standin.url, params=params, timeout=10)
    response.raise_for_status()
    return response


def test_default_request_returns_one_user_and_the_info_block(standin: StandIn) -> None:
    body = get(standin).json()
    assert len(body["results"]) == 1
    assert set(body["info"]) == {"seed", "results", "page", "version"}
    assert body["info"]["results"] == 1 and body["info"]["page"] == 1
    assert body["info"]["version"] == "1.4"
    assert re.fullmatch(r"[0-9a-f]{16}", body["info"]["seed"])


def test_every_user_has_the_served_shape_and_types(standin: StandIn) -> None:
    users = get(standin, results=500, seed="shape").json()["results"]
    for user in users:
        assert tuple(user) == TOP_LEVEL_FIELDS
        assert user["gender"] in ("male", "female")
        assert set(user["name"]) == {"title", "first", "last"}
        location = user["location"]
        assert isinstance(location["street"]["number"], int)
        assert isinstance(location["street"]["name"], str)
        assert isinstance(location["postcode"], (int, str))
        assert all(isinstance(v, str) for v in location["coordinates"].values())
        assert set(location["timezone"]) == {"offset", "description"}
        assert user["email"].endswith("@example.com")
        login = user["login"]
        assert set(login) == {"uuid", "username", "password", "salt", "md5", "sha1", "sha256"}
        assert UUID4.match(login["uuid"])
        assert len(login["md5"]) == 32 and len(login["sha1"]) == 40 and len(login["sha256"]) == 64
        for when in ("dob", "registered"):
            assert ISO_MS.match(user[when]["date"]) and isinstance(user[when]["age"], int)
        assert set(user["id"]) == {"name", "value"}
        assert user["id"]["value"] is None or isinstance(user["id"]["value"], str)
        assert set(user["picture"]) == {"large", "medium", "thumbnail"}
        assert re.fullmatch(r"[A-Z]{2}", user["nat"])


def test_quirks_appear_int_and_str_postcodes_null_ids_and_many_scripts(standin: StandIn) -> None:
    users = get(standin, results=2000, seed="quirks").json()["results"]
    postcode_types = Counter(type(u["location"]["postcode"]).__name__ for u in users)
    assert postcode_types["int"] > 0 and postcode_types["str"] > 0
    assert any(u["id"]["value"] is None and u["id"]["name"] == "" for u in users)
    names = " ".join(f"{u['name']['first']} {u['name']['last']}" for u in users)
    assert re.search(r"[\u0600-\u06ff]", names), "Arabic/Persian script"
    assert re.search(r"[\u0400-\u04ff]", names), "Cyrillic"
    assert re.search(r"[À-ÿ]", names), "accented Latin"
    assert re.search("[\u0629]", names), "an Arabic-only letter (teh marbuta)"
    assert re.search("[\u067e\u06a9\u06af\u06cc]", names), "Persian-only letters"


def test_utf8_is_served_raw_not_escaped(standin: StandIn) -> None:
    response = get(standin, results=50, seed="utf8", nat="ir")
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    first = response.json()["results"][0]["name"]["first"]
    assert first.encode("utf-8") in response.content


def test_same_seed_and_page_give_the_same_users(standin: StandIn) -> None:
    one = get(standin, results=300, seed="replay", page=7).json()["results"]
    two = get(standin, results=300, seed="replay", page=7).json()["results"]
    assert one == two
    assert one == generate_users("replay", 7, 300)


def test_other_pages_and_seeds_give_other_users(standin: StandIn) -> None:
    def uuids(**params: Any) -> set[str]:
        return {u["login"]["uuid"] for u in get(standin, results=1000, **params).json()["results"]}

    page1, page2, other = uuids(seed="s", page=1), uuids(seed="s", page=2), uuids(seed="t", page=1)
    assert len(page1) == len(page2) == len(other) == 1000
    assert not page1 & page2 and not page1 & other


def test_results_are_capped_at_5000(standin: StandIn) -> None:
    body = get(standin, results=7000, seed="cap").json()
    assert len(body["results"]) == MAX_RESULTS == body["info"]["results"]


def test_a_page_of_5000_users_is_served_whole_as_rendered_from_seed_and_page(
    standin: StandIn,
) -> None:
    # How fast is the benchmark's figure (`python -m script bench --parts fetch`), not a test's.
    uuids: set[str] = set()
    for page in (1, 2, 3):
        params = {"results": "5000", "seed": "full", "page": str(page)}
        response = get(standin, **params)
        assert response.content == response_body({k: [v] for k, v in params.items()})
        users = response.json()["results"]
        assert len(users) == MAX_RESULTS
        uuids |= {u["login"]["uuid"] for u in users}
    assert len(uuids) == 3 * MAX_RESULTS


def test_pages_rendered_ahead_are_served_from_memory_as_they_would_be_rendered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The benchmark's producer runs ask for this (`POST /_pages`): the same bytes, with no
    # rendering left for the request; faults still apply; DELETE drops them.
    control = "/_pages"
    with StandIn() as server:
        spec = {"seed": "ahead", "results": 300, "pages": [1, 2]}
        answer = requests.post(f"{server.base_url}{control}", json=spec, timeout=30).json()
        assert answer["rendered"] == 2 and answer["bytes"] > 300 * 500
        expected = {
            page: response_body({"results": ["300"], "seed": ["ahead"], "page": [str(page)]})
            for page in (1, 2)
        }

        def no_rendering(params: Any) -> bytes:
            raise AssertionError(f"rendered while asked for {params}")

        monkeypatch.setattr("standin.server.response_body", no_rendering)
        for page in (1, 2):
            assert get(server, results=300, seed="ahead", page=page).content == expected[page]
        # Not rendered ahead (another page, size or parameter): rendered as asked, here refused.
        for params in ({"page": 3}, {"page": 1, "results": 299}, {"page": 1, "nat": "fr"}):
            query = {"results": 300, "seed": "ahead", **params}
            with pytest.raises(requests.RequestException):
                requests.get(server.url, params=query, timeout=5).raise_for_status()
        server.add_faults({"status": 503})
        assert requests.get(server.url, params=spec | {"page": 1}, timeout=5).status_code == 503
        server.add_faults({"edits": [{"user": 0, "drop": "email"}]})
        edited = get(server, results=300, seed="ahead", page=2).json()["results"]
        assert "email" not in edited[0] and edited[1:] == json.loads(expected[2])["results"][1:]
        assert get(server, results=300, seed="ahead", page=2).content == expected[2]
        monkeypatch.undo()
        dropped = requests.delete(f"{server.base_url}{control}", timeout=5).json()
        assert dropped == {"dropped": 2}
        monkeypatch.setattr("standin.server.response_body", no_rendering)
        with pytest.raises(requests.RequestException):
            requests.get(server.url, params=spec | {"page": 1}, timeout=5).raise_for_status()


def test_a_runs_pages_rendered_ahead_are_the_pages_its_producer_fetches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `./run.sh` with the stand-in renders the run's pages before it triggers the run: the
    # run's task then fetches each of them, with the seed of its run id, from memory.
    from pipeline import config
    from pipeline.randomuser import RandomUserClient, iter_batches, run_seed
    from script import run_pipeline

    run_id, conf = "manual__2026-12-06T19:00:00+00:00", {"total": 1500}
    with StandIn() as server:
        for name, value in {"USERS_API_URL": server.url, "USERS_PER_REQUEST": "500"}.items():
            monkeypatch.setenv(name, value)
        for name in ("USERS_SEED", "USERS_NAT", "USERS_START_PAGE"):  # the user's own, if set
            monkeypatch.delenv(name, raising=False)
        assert run_pipeline.render_run_ahead(server.url, conf, run_id)

        def no_rendering(params: Any) -> bytes:
            raise AssertionError(f"rendered while asked for {params}")

        monkeypatch.setattr("standin.server.response_body", no_rendering)
        api = config.load_for_run(conf).api  # the task's settings: the same env and conf
        batches = list(iter_batches(RandomUserClient(api), run_seed(api, run_id)))
        assert [(b.page, len(b.users)) for b in batches] == [(1, 500), (2, 500), (3, 500)]
        assert len({u["login"]["uuid"] for b in batches for u in b.users}) == 1500


@pytest.mark.parametrize(
    "spec", [{"seed": "", "results": 5, "pages": [1]}, {"seed": "s", "results": 5, "pages": [0]}]
)
def test_a_bad_render_ahead_spec_is_refused(standin: StandIn, spec: dict[str, Any]) -> None:
    answer = requests.post(f"{standin.base_url}/_pages", json=spec, timeout=5)
    assert answer.status_code == 400 and '"pages"' in answer.json()["error"]


def test_nat_inc_and_exc_filter_like_the_api(standin: StandIn) -> None:
    users = get(standin, results=200, seed="nat", nat="ua,ir").json()["results"]
    assert {u["nat"] for u in users} == {"UA", "IR"}
    included = get(standin, results=5, seed="nat", inc="name,login,nat").json()["results"]
    assert all(tuple(u) == ("name", "login", "nat") for u in included)
    excluded = get(standin, results=5, seed="nat", exc="login,picture").json()["results"]
    assert all("login" not in u and "picture" not in u and "email" in u for u in excluded)
    full = get(standin, results=5, seed="nat").json()["results"]
    assert [u["login"]["uuid"] for u in included] == [u["login"]["uuid"] for u in full]


def test_control_endpoint_queues_faults_in_order_then_recovers(standin: StandIn) -> None:
    standin.clear()
    control = f"{standin.base_url}/_faults"
    specs = [{"status": 503, "count": 2}, {"status": 429, "retry_after": "3"}, {"error_body": True}]
    assert requests.post(control, json=specs, timeout=5).json() == {"queued": 3}
    answers = [requests.get(standin.url, timeout=5) for _ in range(5)]
    assert [r.status_code for r in answers] == [503, 503, 429, 200, 200]
    assert answers[2].headers["Retry-After"] == "3"
    assert "error" in answers[3].json() and "results" not in answers[3].json()
    assert len(answers[4].json()["results"]) == 1
    state = requests.get(control, timeout=5).json()
    assert state["pending"] == [] and len(state["requests"]) == 5
    assert [r["fault"] is not None for r in state["requests"]] == [True] * 4 + [False]
    assert requests.delete(control, timeout=5).json() == {"cleared": True}
    assert requests.get(control, timeout=5).json() == {"pending": [], "requests": []}


def test_bad_fault_spec_is_refused(standin: StandIn) -> None:
    answer = requests.post(f"{standin.base_url}/_faults", json={"sttus": 500}, timeout=5)
    assert answer.status_code == 400 and "sttus" in answer.json()["error"]


def test_edits_serve_odd_entries_in_the_next_page_and_leave_the_rest_as_rendered(
    standin: StandIn,
) -> None:
    standin.clear()
    edits = [
        {"user": 0, "replace": None},
        {"user": 1, "replace": "a string"},
        {"user": 2, "replace": 42},
        {"user": 3, "surrogate": "name.first"},
        {"user": 4, "drop": "login.uuid"},
        {"user": 5, "set": "email", "value": {"address": "x@example.com"}},
        {"user": 99, "replace": None},  # not on a page of 8: changes nothing
    ]
    answer = requests.post(f"{standin.base_url}/_faults", json={"edits": edits}, timeout=5)
    assert answer.json() == {"queued": 1}
    odd = requests.get(standin.url, params={"results": 8, "seed": "odd"}, timeout=5)
    assert b"\\ud800" in odd.content  # the JSON escape: legal JSON, no UTF-8 of its own
    served = odd.json()["results"]
    rendered = generate_users("odd", 1, 8)
    assert served[:3] == [None, "a string", 42]
    assert served[3]["name"]["first"] == rendered[3]["name"]["first"] + "\ud800"
    assert "uuid" not in served[4]["login"]
    assert served[5]["email"] == {"address": "x@example.com"}
    untouched = {**served[3], "name": rendered[3]["name"]}
    assert untouched == rendered[3]
    assert served[6:] == rendered[6:]
    after = requests.get(standin.url, params={"results": 8, "seed": "odd"}, timeout=5)
    assert after.json()["results"] == rendered  # one request only


@pytest.mark.parametrize(
    "edit",
    [{"user": 0}, {"user": -1, "replace": None}, {"user": 0, "drop": ""}, {"user": 0, "set": "x"}],
)
def test_a_bad_edit_is_refused(standin: StandIn, edit: dict[str, Any]) -> None:
    answer = requests.post(f"{standin.base_url}/_faults", json={"edits": [edit]}, timeout=5)
    assert answer.status_code == 400 and "edit" in answer.json()["error"]


def test_truncated_body_declares_the_full_length_but_sends_less(standin: StandIn) -> None:
    standin.add_faults({"truncate": 0.5})
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(standin.url, params={"results": 100}, timeout=5)
    standin.add_faults({"truncate": 0.5, "declare_full_length": False})
    short = requests.get(standin.url, params={"results": 100}, timeout=5)
    with pytest.raises(json.JSONDecodeError):
        short.json()


def test_command_line_server_prints_its_url_and_serves(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "standin", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api/", url)
        body = requests.get(url, params={"results": 3, "seed": "cli"}, timeout=10).json()
        assert body["results"] == generate_users("cli", 1, 3)
    finally:
        process.terminate()
        process.wait(timeout=10)
