"""Users from a seed and a page, rendered straight to the JSON text the API serves.

``render_users(seed, page, results)`` is the same text on every call, in every process; a
smaller ``results`` is a prefix of a larger one. ``response_body(params)`` is a whole answer
for a query (``results`` capped at 5000, ``seed``/``page``/``nat``/``gender``/``inc``/``exc``).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from standin.data import (
    ADJECTIVES,
    AGE_REFERENCE_MS,
    ALL_NATS,
    ANIMALS,
    DOB_RANGE_MS,
    NATS,
    PASSWORDS,
    REGISTERED_RANGE_MS,
    TIMEZONES,
    TITLES,
    YEAR_MS,
    Nat,
)

_T = TypeVar("_T")

VERSION = "1.4"
MAX_RESULTS = 5000
TOP_LEVEL_FIELDS = (
    "gender",
    "name",
    "location",
    "email",
    "login",
    "dob",
    "registered",
    "phone",
    "cell",
    "id",
    "picture",
    "nat",
)
# The alphabets of login salts and of the letters in number patterns.
_SALT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Pattern:
    """A digit/letter pattern: '#' becomes a digit, 'A' a capital letter, the rest stays."""

    def __init__(self, pattern: str) -> None:
        # One random draw per run of digits: "(###) ###-####" costs three draws, not ten.
        parts = re.split(r"(#+|A)", pattern)
        self.template = "".join(
            "{}" if i % 2 else part.replace("{", "{{").replace("}", "}}")
            for i, part in enumerate(parts)
        )
        self.slots = tuple(0 if run == "A" else len(run) for run in parts[1::2])

    def fill(self, rnd: Callable[[], float]) -> str:
        return self.template.format(
            *[
                f"{int(rnd() * 10**width):0{width}d}" if width else _LETTERS[int(rnd() * 26)]
                for width in self.slots
            ]
        )


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _json_pool(pool: Iterable[str]) -> tuple[str, ...]:
    return tuple(_json(item) for item in pool)


@dataclass(frozen=True)
class _Compiled:
    """A nationality with every string pre-escaped for JSON, so a user is one %-format."""

    code: str
    country: str
    male: tuple[tuple[str, str], ...]
    female: tuple[tuple[str, str], ...]
    last: tuple[tuple[str, str], ...]
    cities: tuple[str, ...]
    states: tuple[str, ...]
    streets: tuple[str, ...]
    postcode_digits: int
    postcode: _Pattern | None
    phone: _Pattern
    cell: _Pattern
    id_name: str
    id_value: _Pattern | None

    @classmethod
    def of(cls, code: str, nat: Nat) -> _Compiled:
        digits = int(nat.postcode[4:]) if nat.postcode.startswith("int:") else 0
        return cls(
            code,
            _json(nat.country),
            tuple((_json(n), a) for n, a in nat.male),
            tuple((_json(n), a) for n, a in nat.female),
            tuple((_json(n), a) for n, a in nat.last),
            _json_pool(nat.cities),
            _json_pool(nat.states),
            _json_pool(nat.streets),
            digits,
            None if digits else _Pattern(nat.postcode),
            _Pattern(nat.phone),
            _Pattern(nat.cell),
            _json(nat.id_name),
            None if nat.id_value is None else _Pattern(nat.id_value),
        )


_COMPILED = {code: _Compiled.of(code, nat) for code, nat in NATS.items()}
_EPOCH = datetime(1970, 1, 1)
_TITLES_JSON = {sex: _json_pool(titles) for sex, titles in TITLES.items()}
_TIMEZONES_JSON = tuple((offset, _json(description)) for offset, description in TIMEZONES)
_PICTURES = "https://randomuser.me/api/portraits"
# One user, as the API serves it (field order included); every %(...)s is already JSON.
_USER = (
    '{"gender":"%(gender)s","name":{"title":%(title)s,"first":%(first)s,"last":%(last)s},'
    '"location":{"street":{"number":%(number)d,"name":%(street)s},"city":%(city)s,'
    '"state":%(state)s,"country":%(country)s,"postcode":%(postcode)s,'
    '"coordinates":{"latitude":"%(latitude).4f","longitude":"%(longitude).4f"},'
    '"timezone":{"offset":"%(offset)s","description":%(tz)s}},'
    '"email":"%(email)s","login":{"uuid":"%(uuid)s","username":"%(username)s",'
    '"password":%(password)s,"salt":"%(salt)s","md5":"%(md5)s","sha1":"%(sha1)s",'
    '"sha256":"%(sha256)s"},"dob":{"date":"%(dob)s","age":%(dob_age)d},'
    '"registered":{"date":"%(registered)s","age":%(registered_age)d},'
    '"phone":"%(phone)s","cell":"%(cell)s","id":{"name":%(id_name)s,"value":%(id_value)s},'
    '"picture":{"large":"%(pictures)s/%(portrait)s","medium":"%(pictures)s/med/%(portrait)s",'
    '"thumbnail":"%(pictures)s/thumb/%(portrait)s"},"nat":"%(nat)s"}'
)


def _date(ms: int) -> str:
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds") + "Z"


def _uuid4(bits: int) -> str:
    """An RFC 4122 version-4 UUID string from 128 random bits (what ``uuid.UUID`` does, faster)."""
    bits = (bits & ~(0xF000 << 64) & ~(0xC000 << 48)) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _pick(rnd: Callable[[], float], seq: Sequence[_T]) -> _T:
    return seq[int(rnd() * len(seq))]


def _render_user(rng: random.Random, nat: _Compiled, gender: str | None) -> str:
    rnd = rng.random
    sex = gender or ("male" if rnd() < 0.5 else "female")
    first, first_ascii = _pick(rnd, nat.male if sex == "male" else nat.female)
    last, last_ascii = _pick(rnd, nat.last)
    if nat.postcode is None:
        low = 10 ** (nat.postcode_digits - 1)
        postcode = str(low + int(rnd() * 9 * low))
    else:
        postcode = f'"{nat.postcode.fill(rnd)}"'
    password = _pick(rnd, PASSWORDS)
    salt = "".join([_SALT_CHARS[int(rnd() * 62)] for _ in range(8)])
    salted = (password + salt).encode()
    dob = DOB_RANGE_MS[0] + int(rnd() * (DOB_RANGE_MS[1] - DOB_RANGE_MS[0]))
    registered = REGISTERED_RANGE_MS[0] + int(
        rnd() * (REGISTERED_RANGE_MS[1] - REGISTERED_RANGE_MS[0])
    )
    offset, tz = _pick(rnd, _TIMEZONES_JSON)
    return _USER % {
        "gender": sex,
        "title": _pick(rnd, _TITLES_JSON[sex]),
        "first": first,
        "last": last,
        "number": 1 + int(rnd() * 9999),
        "street": _pick(rnd, nat.streets),
        "city": _pick(rnd, nat.cities),
        "state": _pick(rnd, nat.states),
        "country": nat.country,
        "postcode": postcode,
        "latitude": rnd() * 180 - 90,
        "longitude": rnd() * 360 - 180,
        "offset": offset,
        "tz": tz,
        "email": f"{first_ascii}.{last_ascii}@example.com",
        "uuid": _uuid4(rng.getrandbits(128)),
        "username": f"{_pick(rnd, ADJECTIVES)}{_pick(rnd, ANIMALS)}{100 + int(rnd() * 900)}",
        "password": _json(password),
        "salt": salt,
        # Fake secrets shaped like the API's; the pipeline must never forward them.
        "md5": hashlib.md5(salted).hexdigest(),
        "sha1": hashlib.sha1(salted).hexdigest(),
        "sha256": hashlib.sha256(salted).hexdigest(),
        "dob": _date(dob),
        "dob_age": int((AGE_REFERENCE_MS - dob) // YEAR_MS),
        "registered": _date(registered),
        "registered_age": int((AGE_REFERENCE_MS - registered) // YEAR_MS),
        "phone": nat.phone.fill(rnd),
        "cell": nat.cell.fill(rnd),
        "id_name": nat.id_name,
        "id_value": "null" if nat.id_value is None else f'"{nat.id_value.fill(rnd)}"',
        "pictures": _PICTURES,
        "portrait": f"{'men' if sex == 'male' else 'women'}/{int(rnd() * 100)}.jpg",
        "nat": nat.code,
    }


def render_users(
    seed: str,
    page: int,
    results: int,
    nats: Iterable[str] = ALL_NATS,
    gender: str | None = None,
) -> str:
    """The JSON array of ``results`` users of ``page`` for ``seed``: the same text every time.

    A smaller ``results`` gives a prefix of a larger one on the same page.
    """
    compiled = [_COMPILED[code] for code in nats]
    # str seeds go through SHA-512, so this is stable across processes and PYTHONHASHSEED.
    rng = random.Random(f"{seed}|{page}")
    rnd = rng.random
    users = [_render_user(rng, _pick(rnd, compiled), gender) for _ in range(results)]
    return "[" + ",".join(users) + "]"


def generate_users(
    seed: str,
    page: int,
    results: int,
    nats: Iterable[str] = ALL_NATS,
    gender: str | None = None,
) -> list[dict[str, Any]]:
    """``render_users`` parsed: the users as dicts."""
    return json.loads(render_users(seed, page, results, nats, gender))


def _first(params: Mapping[str, list[str]], name: str) -> str:
    values = params.get(name)
    return values[0].strip() if values else ""


def _list(params: Mapping[str, list[str]], name: str) -> list[str]:
    return [v.strip().lower() for v in _first(params, name).split(",") if v.strip()]


def _int_param(params: Mapping[str, list[str]], name: str, default: int) -> int:
    try:
        return int(_first(params, name) or default)
    except ValueError:
        return default


def response_body(params: Mapping[str, list[str]]) -> bytes:
    """The UTF-8 JSON body the API serves for query ``params`` (as from ``parse_qs``)."""
    results = min(max(_int_param(params, "results", 1), 1), MAX_RESULTS)
    page = max(_int_param(params, "page", 1), 1)
    seed = _first(params, "seed") or secrets.token_hex(8)
    nats = [n.upper() for n in _list(params, "nat") if n.upper() in NATS] or list(ALL_NATS)
    gender = _first(params, "gender").lower()
    users = render_users(seed, page, results, nats, gender if gender in TITLES else None)
    include = [f for f in _list(params, "inc") if f in TOP_LEVEL_FIELDS]
    exclude = set(_list(params, "exc"))
    keep = [f for f in (include or TOP_LEVEL_FIELDS) if f not in exclude]
    if len(keep) != len(TOP_LEVEL_FIELDS):
        trimmed = [{k: u[k] for k in keep} for u in json.loads(users)]
        users = json.dumps(trimmed, ensure_ascii=False, separators=(",", ":"))
    info = json.dumps({"seed": seed, "results": results, "page": page, "version": VERSION})
    return f'{{"results":{users},"info":{info}}}'.encode()


def build_response(params: Mapping[str, list[str]]) -> dict[str, Any]:
    """``response_body`` parsed."""
    return json.loads(response_body(params))


LONE_SURROGATE = "\ud800"
EDIT_KINDS = ("replace", "drop", "set", "surrogate")


def check_edit(edit: Mapping[str, Any]) -> None:
    """``ValueError`` unless ``edit`` is one edit ``edit_body`` knows (see its docstring)."""
    kinds = [k for k in EDIT_KINDS if k in edit]
    allowed = {"user", *kinds, *(["value"] if kinds == ["set"] else [])}
    user = edit.get("user")
    if len(kinds) != 1 or set(edit) != allowed or type(user) is not int or user < 0:
        raise ValueError(
            f"an edit is {{'user': <index>, and one of {', '.join(EDIT_KINDS)}}} "
            f"('set' with 'value'), not {dict(edit)!r}"
        )
    if kinds[0] in ("drop", "set", "surrogate") and not (
        isinstance(edit[kinds[0]], str) and edit[kinds[0]]
    ):
        raise ValueError(f"an edit's {kinds[0]!r} takes a dotted path such as 'name.first'")


def _parent(user: Any, path: str) -> tuple[dict[str, Any], str] | None:
    *steps, last = path.split(".")
    node = user
    for step in steps:
        node = node.get(step) if isinstance(node, dict) else None
    return (node, last) if isinstance(node, dict) else None


def edit_body(body: bytes, edits: Iterable[Mapping[str, Any]]) -> bytes:
    """``body`` (an API answer) with entries of its ``results`` edited, as odd APIs serve them.

    Each edit names an entry by its index (``user``) and does one of: ``replace`` it with any
    JSON value (``null``, a string, a number, a list); ``drop`` the value at a dotted path;
    ``set`` the value at a path to ``value`` (a number where a string is served, an object,
    ``null``); ``surrogate``: append a lone surrogate to the string at a path. Edits of an
    index or a path the page does not have change nothing. The body is written with ASCII
    escapes, so a lone surrogate travels as the JSON text ``\\ud800``, which is legal JSON.
    """
    answer = json.loads(body)
    users = answer["results"]
    for edit in edits:
        index = edit["user"]
        if index >= len(users):
            continue
        if "replace" in edit:
            users[index] = edit["replace"]
            continue
        path = edit.get("drop") or edit.get("set") or edit["surrogate"]
        found = _parent(users[index], path)
        if found is None:
            continue
        parent, key = found
        if "drop" in edit:
            parent.pop(key, None)
        elif "set" in edit:
            parent[key] = edit["value"]
        elif isinstance(parent.get(key), str):
            parent[key] += LONE_SURROGATE
    return json.dumps(answer, ensure_ascii=True, separators=(",", ":")).encode("ascii")
