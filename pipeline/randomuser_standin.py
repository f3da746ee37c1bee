"""A randomuser.me-compatible server for tests, the benchmark and offline runs.

It answers ``GET /api/`` like the public API (see the project's randomuser facts sheet): the
same JSON shape and quirks (postcode int or str, ``id.value`` null for some nationalities,
names in Latin-with-accents, Arabic, Persian and Cyrillic scripts, login secrets, an ``info``
block with version "1.4"), ``results`` capped at 5000, ``seed``/``page``/``nat``/``gender``/
``inc``/``exc``. The same seed and page always give the same users; other pages give others.

Faults are injected through a control endpoint, so the client under test needs no special
parameters. ``POST /_faults`` with one fault object, a list of them or ``{"faults": [...]}``
queues them; each applies to the next ``count`` API requests, in order::

    {"status": 503, "count": 2}              503 twice, then normal answers
    {"status": 429, "retry_after": "1"}      429 with a Retry-After header
    {"delay": 2.5}                           answer normally after 2.5 s (client timeouts)
    {"truncate": 0.5}                        send half the body, then close the connection
    {"truncate": 0.5, "declare_full_length": false}   half the body, honest Content-Length
    {"error_body": true}                     200 whose body is {"error": "..."}
    {}                                       a normal answer (lets requests through first)

``GET /_faults`` shows pending faults and the log of API requests; ``DELETE /_faults`` clears
both. Run it with ``python -m pipeline.randomuser_standin --host 127.0.0.1 --port 8765``, or
in-process with ``StandIn(port=0).start()`` (a free port; ``.url`` is the API URL).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import secrets
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)
_T = TypeVar("_T")

VERSION = "1.4"
MAX_RESULTS = 5000
API_PATHS = frozenset({"/api", "/api/", f"/api/{VERSION}", f"/api/{VERSION}/"})
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
ERROR_BODY = {
    "error": "Uh oh, something has gone wrong. Please tell us on GitHub or Twitter "
    "and we'll look into it."
}
# Ages are computed against a fixed date so a seed's users are identical on every day.
_AGE_REFERENCE_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
_YEAR_MS = 365.2425 * 24 * 3600 * 1000
_DOB_RANGE_MS = (
    int(datetime(1945, 1, 1, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2003, 12, 31, tzinfo=UTC).timestamp() * 1000),
)
_REGISTERED_RANGE_MS = (
    int(datetime(2002, 1, 1, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2022, 12, 31, tzinfo=UTC).timestamp() * 1000),
)


# --- name and place pools -------------------------------------------------------------------
# Non-Latin entries are "native:latin"; the Latin form feeds the email like the real API does.


def _ascii(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(ch for ch in folded.lower() if ch.isalnum())


def _pool(text: str) -> tuple[tuple[str, str], ...]:
    entries = []
    for item in text.split(","):
        native, _, latin = item.strip().partition(":")
        entries.append((native, _ascii(latin or native)))
    return tuple(entries)


def _words(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(","))


@dataclass(frozen=True)
class _Nat:
    country: str
    male: tuple[tuple[str, str], ...]
    female: tuple[tuple[str, str], ...]
    last: tuple[tuple[str, str], ...]
    cities: tuple[str, ...]
    states: tuple[str, ...]
    streets: tuple[str, ...]
    postcode: str  # pattern: '#' digit, 'A' letter; "int:N" for an N-digit integer
    phone: str
    cell: str
    id_name: str
    id_value: str | None  # pattern, or None: the API serves {"name": "", "value": null}


NATS: dict[str, _Nat] = {
    "US": _Nat(
        "United States",
        _pool("James, Brad, Jesse, Herbert, Travis, Ron, Clinton, Gene, Lewis, Ricky"),
        _pool("Kimberly, Jennie, Sheila, Leah, Joyce, Rosa, Vanessa, Marsha, Jill, Ella"),
        _pool("Ramos, Gibson, Hughes, Watson, Sanders, Fowler, Lucas, Burke, Wade, Ortiz"),
        _words("Fontana, Toledo, Arvada, Frisco, Stamford, Lansing, Denton, Modesto"),
        _words("Texas, Oregon, Nevada, Ohio, Kentucky, Virginia, Illinois, Georgia"),
        _words("Hickory Creek Dr, Mockingbird Ln, Pecan Acres Ln, W Sherman Dr, Lovers Ln"),
        "int:5",
        "(###) ###-####",
        "(###) ###-####",
        "SSN",
        "###-##-####",
    ),
    "GB": _Nat(
        "United Kingdom",
        _pool("Oliver, Harry, George, Callum, Kyle, Dylan, Louis, Reece"),
        _pool("Amelia, Chloe, Megan, Ellie, Abbie, Molly, Lily, Sophie"),
        _pool("Smith, Taylor, Davies, Evans, Walker, Wright, Robinson, Hall"),
        _words("Sheffield, Bristol, Leicester, Worcester, Brighton and Hove, Salford"),
        _words("Merseyside, Cornwall, Lancashire, Devon, Norfolk, Tayside"),
        _words("Station Road, Church Lane, Victoria Road, Mill Road, The Green"),
        "A# #AA",
        "0####-######",
        "07###-######",
        "NINO",
        "AA ## ## ## A",
    ),
    "IE": _Nat(
        "Ireland",
        _pool("Brad, Conor, Seán, Pádraig, Eoin, Cian, Darragh"),
        _pool("Aoife, Siobhán, Niamh, Róisín, Caoimhe, Clodagh, Aisling"),
        _pool("Gibson, Murphy, O'Brien, Ó Súilleabháin, Byrne, Kelly, Walsh"),
        _words("Kilcoole, Tralee, Galway, Drogheda, Castlebar, Ennis"),
        _words("Waterford, Kerry, Mayo, Clare, Louth, Wicklow"),
        _words("New Road, Main Street, Mill Lane, Church Road, Park Avenue"),
        "int:5",
        "0##-###-####",
        "08#-###-####",
        "PPS",
        "#######A",
    ),
    "NL": _Nat(
        "Netherlands",
        _pool("Daan, Sem, Bram, Thijs, Jesse, Ruben, Joël"),
        _pool("Mirte, Femke, Sanne, Anouk, Noëlle, Iris, Lotte"),
        _pool("Van den Brink, De Vries, Bakker, Visser, Smit, Meijer, De Jong"),
        _words("Zoeterwoude, Utrecht, Eindhoven, Gouda, Den Helder, Kampen"),
        _words("Overijssel, Utrecht, Gelderland, Zeeland, Friesland, Limburg"),
        _words("Kerkweg, Dorpsstraat, Schoolstraat, Molenweg, Stationsstraat"),
        "#### AA",
        "(0###) ######",
        "(06) ########",
        "BSN",
        "########",
    ),
    "CA": _Nat(
        "Canada",
        _pool("Liam, Noah, Félix, Zachary, Mathis, Logan, Étienne"),
        _pool("Charlotte, Léa, Chloé, Maëlle, Emma, Olivia, Zoé"),
        _pool("Roy, Tremblay, Gagnon, Côté, Bouchard, Lavoie, Wilson"),
        _words("Chipman, Trois-Rivières, Lévis, Kelowna, Sherbrooke, Vaughan"),
        _words("Alberta, Québec, Ontario, Manitoba, Nunavut, Yukon"),
        _words("Parliament St, Dufferin St, King St, Pine Rd, Lakeshore Rd"),
        "A#A #A#",
        "A## A##-####",
        "A## A##-####",
        "SIN",
        "#########",
    ),
    "FR": _Nat(
        "France",
        _pool("Théo, Noé, Maël, Jérémy, Loïc, Clément, Raphaël"),
        _pool("Zoé, Léa, Maëlys, Océane, Anaïs, Célia, Élise"),
        _pool("Lefèvre, Dupont, Mercier, Garnier, Chevalier, Leroy, Rousseau"),
        _words("Saint-Étienne, Besançon, Orléans, Nîmes, Créteil, Aix-en-Provence"),
        _words("Côte-d'Or, Hérault, Isère, Ardèche, Finistère, Vendée"),
        _words("Rue de L'Église, Rue Pasteur, Avenue Goerges-Clémenceau, Rue Duquesne"),
        "int:5",
        "0#-##-##-##-##",
        "06-##-##-##-##",
        "INSEE",
        "############# ##",
    ),
    "DE": _Nat(
        "Germany",
        _pool("Jürgen, Lukas, Jörg, Björn, Günter, Maximilian, Fabian"),
        _pool("Jana, Jördis, Käthe, Ilse, Sünje, Annegret, Lea"),
        _pool("Müller, Schäfer, Weiß, Krüger, Böhm, Hoffmann, Groß"),
        _words("Düsseldorf, Würzburg, Lübeck, Göttingen, Köln, Regensburg"),
        _words("Bayern, Sachsen, Thüringen, Hessen, Saarland, Bremen"),
        _words("Schulstraße, Bahnhofstraße, Gartenstraße, Mühlenweg, Birkenweg"),
        "int:5",
        "0###-#######",
        "017#-#######",
        "SVNR",
        "## ###### A ###",
    ),
    "ES": _Nat(
        "Spain",
        _pool("Jesús, Álvaro, Iván, Andrés, Rubén, Óscar, Ángel"),
        _pool("Lucía, Inés, María, Sofía, Begoña, Nerea, Araceli"),
        _pool("Núñez, Gómez, Martín, Sáez, Jiménez, Peña, Ibáñez"),
        _words("Córdoba, Málaga, Alcalá de Henares, Cádiz, León, Logroño"),
        _words("Andalucía, Galicia, Cataluña, Aragón, Castilla y León, Navarra"),
        _words("Calle de Alcalá, Avenida de Andalucía, Calle del Prado, Paseo de Extremadura"),
        "int:5",
        "9##-###-###",
        "6##-###-###",
        "DNI",
        "########-A",
    ),
    "BR": _Nat(
        "Brazil",
        _pool("João, Tomé, Caetano, Sebastião, Valdir, Heitor, Anísio"),
        _pool("Conceição, Lívia, Anália, Laís, Célia, Luzia, Débora"),
        _pool("Araújo, Gonçalves, Conceição, Peixoto, Fogaça, Cardoso, Mendes"),
        _words("São Gonçalo, Maringá, Florianópolis, Goiânia, Petrópolis, Belém"),
        _words("São Paulo, Pará, Goiás, Paraná, Maranhão, Piauí"),
        _words("Rua São Luiz, Rua Dom Pedro II, Rua Castro Alves, Travessa dos Açorianos"),
        "int:5",
        "(##) ####-####",
        "(##) #####-####",
        "CPF",
        "###.###.###-##",
    ),
    "IR": _Nat(
        "Iran",
        _pool(
            "آرمین:Armin, محمدرضا:Mohammadreza, امیرحسین:Amirhossein, سپهر:Sepehr, "
            "علی:Ali, عبدالله:Abdullah, حسین:Hossein, یاسین:Yasin"
        ),
        _pool(
            "یاسمن:Yasaman, کوثر:Kowsar, نازنین:Nazanin, فاطمة:Fatemah, "
            "زهرا:Zahra, مریم:Maryam, عائشة:Aisha, ستایش:Setayesh"
        ),
        _pool(
            "رضاییان:Rezaeian, جعفری:Jafari, احمدی:Ahmadi, موسوی:Mousavi, "
            "العبدالله:Alabdullah, کریمی:Karimi, الحسيني:Alhusseini, صدر:Sadr"
        ),
        _words("سبزوار, قم, تهران, اصفهان, شیراز, تبریز, مشهد"),
        _words("کرمانشاه, البرز, خراسان رضوی, فارس, گیلان, یزد"),
        _words("پارک لاله, شهید بهشتی, آزادی, ولیعصر, انقلاب, کارگر"),
        "int:5",
        "0##-########",
        "09##-###-####",
        "",
        None,
    ),
    "UA": _Nat(
        "Ukraine",
        _pool(
            "Олександр:Oleksandr, Богдан:Bogdan, Тарас:Taras, Ярослав:Yaroslav, "
            "Євген:Yevgen, Андрій:Andriy"
        ),
        _pool(
            "Оксана:Oksana, Ганна:Ganna, Зоряна:Zoryana, Людмила:Lyudmila, "
            "Ірина:Iryna, Соломія:Solomiya"
        ),
        _pool(
            "Шевченко:Shevchenko, Коваленко:Kovalenko, Бондаренко:Bondarenko, "
            "Мельник:Melnik, Ткачук:Tkachuk, Гончаренко:Goncharenko"
        ),
        _words("Біла Церква, Київ, Львів, Одеса, Житомир, Чернігів"),
        _words("Київська, Львівська, Одеська, Житомирська, Полтавська"),
        _words("Шевченківська, Хрещатик, Садова, Лесі Українки, Грушевського"),
        "int:5",
        "(0##) A##-####",
        "(06#) A##-####",
        "",
        None,
    ),
    "RS": _Nat(
        "Serbia",
        _pool("Милош:Milos, Ђорђе:Djordje, Вук:Vuk, Лазар:Lazar, Никола:Nikola"),
        _pool("Јована:Jovana, Милица:Milica, Ђурђина:Djurdjina, Теодора:Teodora, Сања:Sanja"),
        _pool("Јовановић:Jovanovic, Петровић:Petrovic, Ђорђевић:Djordjevic, Илић:Ilic"),
        _words("Нови Сад, Ниш, Крагујевац, Суботица, Чачак"),
        _words("Јужнобачки, Нишавски, Шумадијски, Моравички"),
        _words("Душанова, Кнеза Милоша, Немањина, Цара Лазара"),
        "int:5",
        "0##-####-###",
        "06#-####-###",
        "SID",
        "#########",
    ),
    "AU": _Nat(
        "Australia",
        _pool("Jack, Lachlan, Riley, Mitchell, Hunter, Cooper"),
        _pool("Charlotte, Isla, Matilda, Ruby, Chloe, Zara"),
        _pool("Nguyen, Wilson, Kelly, Ryan, Martin, Thompson"),
        _words("Ballarat, Bendigo, Wollongong, Cairns, Toowoomba, Mackay"),
        _words("Victoria, Queensland, New South Wales, Tasmania, Western Australia"),
        _words("Robinson Rd, Lakeshore Rd, Dogwood Ave, Hunters Creek Dr"),
        "int:4",
        "0#-####-####",
        "04##-###-###",
        "TFN",
        "#########",
    ),
    "TR": _Nat(
        "Turkey",
        _pool("Çağan, Ömer, Şükrü, İbrahim, Oğuz, Doğan"),
        _pool("Gülşen, Şebnem, Özge, Çiğdem, Ayşe, Büşra"),
        _pool("Öztürk, Çelik, Şahin, Yıldız, Doğan, Aydın"),
        _words("İstanbul, Eskişehir, Şanlıurfa, Muğla, Kırıkkale, Çorum"),
        _words("Ağrı, Düzce, Kütahya, Niğde, Uşak, Iğdır"),
        _words("Atatürk Sk, Bağdat Cd, Doktorlar Cd, Filistin Cd, Vatan Cd"),
        "int:5",
        "(###)-###-####",
        "(###)-###-####",
        "",
        None,
    ),
}
ALL_NATS: tuple[str, ...] = tuple(NATS)

_TITLES = {
    "male": ("Mr", "Mr", "Mr", "Monsieur"),
    "female": ("Ms", "Mrs", "Miss", "Madame"),
}
_TIMEZONES = (
    ("-10:00", "Hawaii"),
    ("-8:00", "Pacific Time (US & Canada)"),
    ("-5:00", "Eastern Time (US & Canada), Bogota, Lima"),
    ("-3:30", "Newfoundland"),
    ("-1:00", "Azores, Cape Verde Islands"),
    ("0:00", "Western Europe Time, London, Lisbon, Casablanca"),
    ("+1:00", "Brussels, Copenhagen, Madrid, Paris"),
    ("+2:00", "Kaliningrad, South Africa"),
    ("+3:30", "Tehran"),
    ("+4:00", "Abu Dhabi, Muscat, Baku, Tbilisi"),
    ("+5:30", "Bombay, Calcutta, Madras, New Delhi"),
    ("+7:00", "Bangkok, Hanoi, Jakarta"),
    ("+9:00", "Tokyo, Seoul, Osaka, Sapporo, Yakutsk"),
    ("+10:00", "Eastern Australia, Guam, Vladivostok"),
    ("+12:00", "Auckland, Wellington, Fiji, Kamchatka"),
)
_ADJECTIVES = _words("big, tiny, silver, golden, orange, crazy, heavy, lazy, happy, sad, brown")
_ANIMALS = _words("swan, peacock, bird, leopard, mouse, ostrich, gorilla, bear, fish, wolf")
_PASSWORDS = _words("firewall, bubbles, 1111, tigger, picard, marlboro, chocolat, sexy, hawkeye")
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
    def of(cls, code: str, nat: _Nat) -> _Compiled:
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
_DIGITS = "0123456789"
_EPOCH = datetime(1970, 1, 1)
_TITLES_JSON = {sex: _json_pool(titles) for sex, titles in _TITLES.items()}
_TIMEZONES_JSON = tuple((offset, _json(description)) for offset, description in _TIMEZONES)
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
    password = _pick(rnd, _PASSWORDS)
    salt = "".join([_SALT_CHARS[int(rnd() * 62)] for _ in range(8)])
    salted = (password + salt).encode()
    dob = _DOB_RANGE_MS[0] + int(rnd() * (_DOB_RANGE_MS[1] - _DOB_RANGE_MS[0]))
    registered = _REGISTERED_RANGE_MS[0] + int(
        rnd() * (_REGISTERED_RANGE_MS[1] - _REGISTERED_RANGE_MS[0])
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
        "username": f"{_pick(rnd, _ADJECTIVES)}{_pick(rnd, _ANIMALS)}{100 + int(rnd() * 900)}",
        "password": _json(password),
        "salt": salt,
        # Fake secrets shaped like the API's; the pipeline must never forward them.
        "md5": hashlib.md5(salted).hexdigest(),
        "sha1": hashlib.sha1(salted).hexdigest(),
        "sha256": hashlib.sha256(salted).hexdigest(),
        "dob": _date(dob),
        "dob_age": int((_AGE_REFERENCE_MS - dob) // _YEAR_MS),
        "registered": _date(registered),
        "registered_age": int((_AGE_REFERENCE_MS - registered) // _YEAR_MS),
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
    users = render_users(seed, page, results, nats, gender if gender in _TITLES else None)
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


# --- faults ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """What to do to the next ``count`` API requests instead of (or before) a normal answer."""

    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0
    truncate: float | None = None
    declare_full_length: bool = True
    error_body: bool = False
    count: int = 1

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault key(s): {', '.join(sorted(unknown))}")
        fault = cls(**data)
        if fault.retry_after is not None:
            fault = cls(**{**asdict(fault), "retry_after": str(fault.retry_after)})
        if fault.count < 1:
            raise ValueError("count must be at least 1")
        if fault.truncate is not None and not 0 <= fault.truncate < 1:
            raise ValueError("truncate is the fraction of the body to send, in [0, 1)")
        return fault


@dataclass
class RequestRecord:
    """One API request as the stand-in saw it."""

    path: str
    query: str
    started: float
    fault: dict[str, Any] | None = None


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: deque[list[Any]] = field(default_factory=deque)  # [Fault, remaining]
    requests: list[RequestRecord] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def take(self, record: RequestRecord) -> Fault | None:
        with self.lock:
            self.requests.append(record)
            if not self.pending:
                return None
            entry = self.pending[0]
            entry[1] -= 1
            if entry[1] == 0:
                self.pending.popleft()
            record.fault = asdict(entry[0])
            return entry[0]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server_version = "randomuser-standin"
    # Headers and body go out in separate writes; with Nagle on, a keep-alive client waits
    # ~40 ms for the delayed ACK on every small response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(
        self,
        status: int,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        self._send(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/_faults":
            self._send_json(200, self.server.state_snapshot())
        elif url.path in API_PATHS:
            self._api(url.path, url.query)
        else:
            self._send_json(404, {"error": f"no such path {url.path}; the API is /api/"})

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/_faults":
            self._send_json(404, {"error": "POST only to /_faults"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            data = json.loads(self.rfile.read(length) or b"null")
            if isinstance(data, dict) and "faults" in data:
                data = data["faults"]
            faults = [
                Fault.from_json(item) for item in (data if isinstance(data, list) else [data])
            ]
        except (ValueError, TypeError) as exc:
            self._send_json(400, {"error": f"bad fault spec: {exc}"})
            return
        self.server.add_faults(*faults)
        self._send_json(200, {"queued": len(faults)})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path != "/_faults":
            self._send_json(404, {"error": "DELETE only to /_faults"})
            return
        self.server.clear()
        self._send_json(200, {"cleared": True})

    def _api(self, path: str, query: str) -> None:
        fault = self.server.state.take(RequestRecord(path, query, time.monotonic()))
        if fault is not None and fault.delay and self.server.state.stopping.wait(fault.delay):
            self.close_connection = True
            return
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send_json(fault.status, {"error": f"injected {fault.status}"}, headers)
            return
        if fault is not None and fault.error_body:
            self._send_json(200, ERROR_BODY)
            return
        body = response_body(parse_qs(query))
        if fault is None or fault.truncate is None:
            self._send(200, body)
            return
        part = body[: int(len(body) * fault.truncate)]
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body if fault.declare_full_length else part)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(part)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a delayed handler must not hold up close()
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, _Handler)
        self.state = _State()

    def add_faults(self, *faults: Fault) -> None:
        with self.state.lock:
            self.state.pending.extend([f, f.count] for f in faults)

    def clear(self) -> None:
        with self.state.lock:
            self.state.pending.clear()
            self.state.requests.clear()

    def state_snapshot(self) -> dict[str, Any]:
        with self.state.lock:
            return {
                "pending": [{**asdict(f), "count": left} for f, left in self.state.pending],
                "requests": [asdict(r) for r in self.state.requests],
            }

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout test) leaves a broken pipe behind: not our error.
        log.debug("connection from %s ended early", client_address)


class StandIn:
    """The stand-in server; ``start()`` serves it from a daemon thread (``port=0``: a free port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port))
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """The API URL, the value for ``USERS_API_URL``."""
        return f"{self.base_url}/api/"

    def add_faults(self, *faults: Fault | Mapping[str, Any]) -> None:
        """Queue faults (``Fault`` or its JSON form) for the next API requests, in order."""
        self._server.add_faults(
            *(f if isinstance(f, Fault) else Fault.from_json(f) for f in faults)
        )

    def clear(self) -> None:
        """Drop pending faults and the request log."""
        self._server.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the log of API requests served so far."""
        with self._server.state.lock:
            return list(self._server.state.requests)

    @property
    def pending_faults(self) -> int:
        with self._server.state.lock:
            return sum(left for _, left in self._server.state.pending)

    def start(self) -> StandIn:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="randomuser-standin", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        self._server.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a randomuser.me-compatible API.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    standin = StandIn(args.host, args.port)
    print(standin.url, flush=True)
    try:
        standin.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        standin.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
