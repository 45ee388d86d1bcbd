"""The ``person`` sampler: made-up people from Faker, one dict per cell, reproducibly.

Faker (the ``person`` extra: ``pip install 'trio_designer[person]'``) is imported when a
pipeline has a person column. Each cell re-seeds the generator's Faker from that cell's own
``rng_for(seed, row, column)``, so a person depends only on (run seed, row, column) like every
sampler's value. Faker is slow (about half a millisecond a person), so this sampler runs in a
worker thread, not inline on the event loop; one lock keeps the one Faker instance to one
thread at a time.

The fields are drawn independently where Faker does not tie them (a city need not lie in the
state); names follow ``sex``, the e-mail follows the name, ``birth_date`` follows ``age`` at
``as_of``.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, final

import pyarrow as pa

from trio_designer._exceptions import ConfigError

from ._samplers import SamplerGenerator

if TYPE_CHECKING:
    from trio_designer.config import PersonSampler

__all__ = ["PERSON_FIELDS", "PersonGenerator"]

#: The fields of a person, in order, with their Arrow types.
PERSON_FIELDS: Final[tuple[tuple[str, Any], ...]] = (
    ("first_name", pa.string()),
    ("last_name", pa.string()),
    ("full_name", pa.string()),
    ("sex", pa.string()),
    ("age", pa.int64()),
    ("birth_date", pa.date32()),
    ("city", pa.string()),
    ("state", pa.string()),
    ("country", pa.string()),
    ("occupation", pa.string()),
    ("email", pa.string()),
    ("phone", pa.string()),
)


def _faker(locale: str, column: str) -> Any:
    try:
        import faker
        import faker.config
    except ImportError:
        raise ConfigError(
            f"column {column!r}: the person sampler needs Faker; install the extra: "
            "pip install 'trio_designer[person]'"
        ) from None
    if locale not in faker.config.AVAILABLE_LOCALES:
        from trio_designer._core._suggest import did_you_mean

        known = faker.config.AVAILABLE_LOCALES
        same = [name for name in known if name.lower() == locale.lower().replace("-", "_")]
        hint = (
            f"did you mean {same[0]!r}?"
            if same
            else did_you_mean(locale, known, otherwise="e.g. 'en_US'")
        )
        raise ConfigError(f"column {column!r}: Faker has no locale {locale!r}; {hint}")
    return faker.Faker(locale)


@final
class PersonGenerator(SamplerGenerator):
    """A person dict per cell (see the module docstring)."""

    inline = False

    def __init__(self, config: PersonSampler) -> None:
        super().__init__(config.name)
        self._fake = _faker(config.locale, config.name)
        self._lock = threading.Lock()
        self._sex = config.sex
        self._youngest, self._oldest = config.age_range
        self._cities = tuple(config.city)
        self._as_of = dt.date.fromisoformat(config.as_of)

    def sample(self, rng: random.Random, row: Mapping[str, Any], row_index: int) -> Any:
        with self._lock:
            return self._person(rng)

    def _person(self, rng: random.Random) -> dict[str, Any]:
        fake = self._fake
        sex = self._sex or rng.choice(("female", "male"))
        age = rng.randint(self._youngest, self._oldest)
        birth_date = _birth_date(rng, age, self._as_of)
        fake.seed_instance(rng.getrandbits(64))
        first = fake.first_name_female() if sex == "female" else fake.first_name_male()
        last = fake.last_name()
        city = rng.choice(self._cities) if self._cities else fake.city()
        return {
            "first_name": first,
            "last_name": last,
            "full_name": f"{first} {last}",
            "sex": sex,
            "age": age,
            "birth_date": birth_date,
            "city": city,
            "state": _first_of(fake, ("administrative_unit", "state", "region")),
            "country": _first_of(fake, ("current_country",)),
            "occupation": fake.job(),
            "email": _email(fake, first, last),
            "phone": fake.phone_number(),
        }

    def arrow_type(self) -> Any:
        return pa.struct([pa.field(name, type_) for name, type_ in PERSON_FIELDS])


def _birth_date(rng: random.Random, age: int, as_of: dt.date) -> dt.date:
    """A birth date that makes someone exactly ``age`` on ``as_of``."""
    latest = _years_before(as_of, age)  # the last birthday that still gives this age
    earliest = _years_before(as_of, age + 1) + dt.timedelta(days=1)
    return earliest + dt.timedelta(days=rng.randint(0, (latest - earliest).days))


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _first_of(fake: Any, methods: tuple[str, ...]) -> str:
    for method in methods:
        try:
            return str(getattr(fake, method)())
        except (AttributeError, NotImplementedError):
            continue
    return ""


def _email(fake: Any, first: str, last: str) -> str:
    local = ".".join(part for part in (_ascii(first), _ascii(last)) if part)
    return f"{local or fake.user_name()}@{fake.free_email_domain()}"


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())
