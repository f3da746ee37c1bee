"""The formatter turns realistic randomuser.me users into contract records, or skips them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import contract
from pipeline.contract import Field, Joined, Served
from pipeline.formatting import Skip, format_user, formatter

FIXTURES = Path(__file__).parent / "fixtures"
PRODUCED_AT = 1_716_000_000_123


def _response() -> dict[str, Any]:
    return json.loads((FIXTURES / "randomuser_response.json").read_text(encoding="utf-8"))


def _users_by_nat_and_first() -> dict[str, dict[str, Any]]:
    return {u["name"]["first"]: u for u in _response()["results"]}


def _format(raw: dict[str, Any]) -> dict[str, Any]:
    record = format_user(raw, PRODUCED_AT)
    assert not isinstance(record, Skip), record
    return record


def test_every_fixture_user_becomes_a_valid_record_with_exactly_the_contract_fields() -> None:
    for raw in _response()["results"]:
        record = _format(raw)
        contract.validate(record)
        assert tuple(record) == contract.FIELD_NAMES


def test_record_maps_each_field_from_the_served_user() -> None:
    raw = _users_by_nat_and_first()["Kimberly"]
    assert _format(raw) == {
        "id": "9d0b5c8e-3f0a-4d4c-9a0e-5a7f0b3c6d21",
        "first_name": "Kimberly",
        "last_name": "Ramos",
        "gender": "female",
        "address": "5381 Hickory Creek Dr, Fontana, Texas, United States",
        "post_code": "18254",
        "email": "kimberly.ramos@example.com",
        "username": "bigpeacock518",
        "dob": "1981-10-20T18:46:45.926Z",
        "registered_date": "2010-03-04T07:12:33.501Z",
        "phone": "(089) 867-3781",
        "picture": "https://randomuser.me/api/portraits/med/women/12.jpg",
        "produced_at": PRODUCED_AT,
    }


@pytest.mark.parametrize(
    ("first", "served", "expected"),
    [
        ("Kimberly", 18254, "18254"),
        ("Mirte", "3436 TI", "3436 TI"),
        ("Liam", "T4B 2N9", "T4B 2N9"),
    ],
)
def test_post_code_is_always_a_string(first: str, served: object, expected: str) -> None:
    raw = _users_by_nat_and_first()[first]
    assert raw["location"]["postcode"] == served
    assert _format(raw)["post_code"] == expected


def test_null_national_id_does_not_matter_because_id_is_the_login_uuid() -> None:
    raw = _users_by_nat_and_first()["آرمین"]
    assert raw["id"] == {"name": "", "value": None}
    assert _format(raw)["id"] == raw["login"]["uuid"]


@pytest.mark.parametrize(
    ("first", "last", "city"),
    [
        ("آرمین", "رضاییان", "سبزوار"),  # Persian
        ("فاطمة", "العبدالله", "قم"),  # Arabic
        ("Zoé", "Lefèvre", "Saint-Étienne"),  # accented Latin
        ("Олександр", "Шевченко", "Біла Церква"),  # Cyrillic
    ],
)
def test_unicode_names_and_places_survive_formatting_and_utf8_json(
    first: str, last: str, city: str
) -> None:
    record = _format(_users_by_nat_and_first()[first])
    assert (record["first_name"], record["last_name"]) == (first, last)
    assert city in record["address"]
    encoded = json.dumps(record, ensure_ascii=False).encode("utf-8")
    assert json.loads(encoded.decode("utf-8")) == record
    assert first.encode("utf-8") in encoded


def test_password_salt_and_hashes_are_never_in_the_record() -> None:
    for raw in _response()["results"]:
        serialized = json.dumps(_format(raw), ensure_ascii=False)
        for secret in ("password", "salt", "md5", "sha1", "sha256"):
            assert raw["login"][secret] not in serialized


def test_formatting_is_pure_and_does_not_touch_the_raw_user() -> None:
    raw = _users_by_nat_and_first()["Zoé"]
    before = json.dumps(raw, sort_keys=True)
    assert _format(raw) == _format(raw)
    assert json.dumps(raw, sort_keys=True) == before


def _broken_users() -> dict[str, dict[str, Any]]:
    return json.loads((FIXTURES / "randomuser_broken_users.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("reason", sorted(_broken_users()))
def test_user_missing_a_required_field_is_skipped_with_the_field_named(
    reason: str,
) -> None:
    assert format_user(_broken_users()[reason], PRODUCED_AT) == Skip(reason)


def test_a_non_integer_produced_at_is_a_programming_error() -> None:
    raw = _users_by_nat_and_first()["Brad"]
    with pytest.raises(TypeError, match="produced_at"):
        format_user(raw, True)  # bool is not a long


def test_a_field_added_to_the_contract_is_read_from_where_it_says() -> None:
    build = formatter(
        (
            *contract.FIELDS,
            Field("age", "long", Served("dob.age")),
            Field("cell", "string", Served("cell"), required=False),
            Field(
                "coordinates",
                "string",
                Joined(
                    "{} / {}",
                    (
                        Served("location.coordinates.latitude"),
                        Served("location.coordinates.longitude"),
                    ),
                ),
            ),
        )
    )
    raw = _users_by_nat_and_first()["Kimberly"]

    assert build(raw, PRODUCED_AT) == {
        **_format(raw),
        "age": 42,
        "cell": "(555) 332-1187",
        "coordinates": "-47.5763 / -56.5418",
    }
    without_cell = {key: value for key, value in raw.items() if key != "cell"}
    assert build(without_cell, PRODUCED_AT)["cell"] is None  # optional
    assert build({**raw, "dob": {**raw["dob"], "age": "42"}}, PRODUCED_AT) == Skip(
        "non-integer (str) dob.age"
    )


def test_a_field_whose_source_cannot_give_its_kind_is_refused_by_name() -> None:
    with pytest.raises(TypeError, match="contract field 'age' \\(long\\) cannot come from"):
        formatter([Field("age", "long", Joined("{}", (Served("dob.age"),)))])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (None, "entry is null, not an object"),
        ("Ann", "entry is a string, not an object"),
        (42, "entry is a number, not an object"),
        (1.5, "entry is a number, not an object"),
        (True, "entry is a boolean, not an object"),
        ([{"gender": "female"}], "entry is an array, not an object"),
    ],
)
def test_a_results_entry_that_is_not_an_object_is_skipped_saying_what_it_is(
    entry: object, reason: str
) -> None:
    assert format_user(entry, PRODUCED_AT) == Skip(reason)


@pytest.mark.parametrize(
    ("path", "value", "reason"),
    [
        ("name.first", 7, "non-string (int) name.first"),
        ("name.first", {"text": "Ann"}, "non-string (dict) name.first"),
        ("name.first", ["Ann"], "non-string (list) name.first"),
        ("name.first", None, "missing name.first"),
        ("location.street.number", "12b", None),  # served as a string by some: taken as it is
        ("location.street.number", 1.5, "non-string (float) location.street.number"),
        ("location.postcode", True, "non-string (bool) location.postcode"),
        ("location", "Dublin", "missing location.street.number"),
        ("login", None, "missing login.uuid"),
    ],
)
def test_a_served_value_of_another_type_is_skipped_naming_it(
    path: str, value: object, reason: str | None
) -> None:
    raw = json.loads(json.dumps(_response()["results"][0]))
    *steps, last = path.split(".")
    node = raw
    for step in steps:
        node = node[step]
    node[last] = value
    result = format_user(raw, PRODUCED_AT)
    if reason is None:
        assert result["address"].startswith(f"{value} ")
    else:
        assert result == Skip(reason)


def test_a_lone_surrogate_in_a_sent_field_fails_validation_and_elsewhere_is_harmless() -> None:
    """``"\\ud800"`` is legal JSON but no UTF-8: the record is refused by the contract, by name."""
    raw = json.loads(json.dumps(_response()["results"][0]).replace('"cell": "', '"cell": "\\ud800'))
    raw["name"]["last"] += "\ud800"
    record = _format(raw)  # formatting copies strings as they are
    with pytest.raises(contract.InvalidRecord, match="field 'last_name' is not UTF-8"):
        contract.validate(record)
    raw["name"]["last"] = raw["name"]["last"][:-1]
    assert "\ud800" in raw["cell"]  # not a field of the record: no harm
    contract.validate(_format(raw))
