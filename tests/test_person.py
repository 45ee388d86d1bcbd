"""The ``person`` sampler (issue 14): Faker people, deterministic per (seed, row, column),
locale-aware, filtered by sex, age range and city, read by templates as ``person.field``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from trio_designer import ConfigError, PipelineConfig, TrioDesigner
from trio_designer.generators._person import PERSON_FIELDS

pytest.importorskip("faker")  # the `person` extra; the Makefile installs it


def _config(person: dict[str, Any], *, row_group_size: int = 5, seed: int = 3) -> PipelineConfig:
    return PipelineConfig.from_dict(
        {
            "run": {"row_group_size": row_group_size, "seed": seed},
            "columns": [
                {"name": "who", "kind": "sampler", "sampler": "person", **person},
                {"name": "greeting", "kind": "expression",
                 "expr": "Dear {{ who.first_name }} {{ who.last_name }} ({{ who.age }})"},
            ],
        }
    )


async def _people(config: PipelineConfig, n: int) -> list[dict[str, Any]]:
    result = await TrioDesigner(progress=False).preview(config, num_records=n)
    rows: list[dict[str, Any]] = result.table.to_pylist()
    return rows


async def test_a_person_has_every_field_and_templates_read_them() -> None:
    rows = await _people(_config({}), 3)
    for row in rows:
        person = row["who"]
        assert list(person) == [name for name, _ in PERSON_FIELDS]
        assert row["greeting"] == (
            f"Dear {person['first_name']} {person['last_name']} ({person['age']})"
        )
        assert person["full_name"] == f"{person['first_name']} {person['last_name']}"
        assert person["country"] == "United States"
        local, _, domain = person["email"].partition("@")
        assert local.startswith(person["first_name"].lower()[:2])
        assert "." in domain


@pytest.mark.deadline(20)
async def test_people_depend_only_on_seed_row_and_column() -> None:
    small = await _people(_config({}, row_group_size=2), 7)
    large = await _people(_config({}, row_group_size=50), 7)
    assert small == large
    other = await _people(_config({}, seed=4), 7)
    assert other != small


async def test_filters_sex_age_range_and_city() -> None:
    filters = {"sex": "female", "age_range": [30, 31], "city": ["Lyon", "Nantes"],
               "as_of": "2024-06-30"}
    rows = await _people(_config(filters), 12)
    for row in rows:
        person = row["who"]
        assert person["sex"] == "female"
        assert person["age"] in (30, 31)
        assert person["city"] in ("Lyon", "Nantes")
        born: dt.date = person["birth_date"]
        as_of = dt.date(2024, 6, 30)
        age = as_of.year - born.year - ((as_of.month, as_of.day) < (born.month, born.day))
        assert age == person["age"]
    assert {row["who"]["age"] for row in rows} == {30, 31}


async def test_the_locale_sets_names_and_country() -> None:
    rows = await _people(_config({"locale": "de_DE"}), 3)
    assert {row["who"]["country"] for row in rows} == {"Germany"}
    assert all(row["who"]["email"].isascii() for row in rows)
    japanese = await _people(_config({"locale": "ja_JP"}), 2)
    assert all(row["who"]["email"].isascii() for row in japanese)  # names fold to nothing


async def test_an_unknown_locale_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"Faker has no locale 'de_de'; did you mean 'de_DE'"):
        await _people(_config({"locale": "de_de"}), 1)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"age_range": [40, 30]}, r"youngest <= oldest"),
        ({"age_range": [18]}, r"two integers"),
        ({"sex": "other"}, r"sex: must be one of 'female', 'male'"),
        ({"as_of": "yesterday"}, r"ISO 8601 date"),
    ],
)
def test_bad_person_fields(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        _config(fields)
