"""The stand-in's tables: each nationality's names, places and number patterns, and the rest.

Plain data that ``standin.render`` draws from; changing any entry changes every seed's users.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

# Ages are computed against a fixed date so a seed's users are identical on every day.
AGE_REFERENCE_MS = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp() * 1000)
YEAR_MS = 365.2425 * 24 * 3600 * 1000
DOB_RANGE_MS = (
    int(datetime(1945, 1, 1, tzinfo=UTC).timestamp() * 1000),
    int(datetime(2003, 12, 31, tzinfo=UTC).timestamp() * 1000),
)
REGISTERED_RANGE_MS = (
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
class Nat:
    """One nationality: names as (as served, Latin for the email), places, number patterns."""

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


NATS: dict[str, Nat] = {
    "US": Nat(
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
    "GB": Nat(
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
    "IE": Nat(
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
    "NL": Nat(
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
    "CA": Nat(
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
    "FR": Nat(
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
    "DE": Nat(
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
    "ES": Nat(
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
    "BR": Nat(
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
    "IR": Nat(
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
    "UA": Nat(
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
    "RS": Nat(
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
    "AU": Nat(
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
    "TR": Nat(
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

TITLES = {
    "male": ("Mr", "Mr", "Mr", "Monsieur"),
    "female": ("Ms", "Mrs", "Miss", "Madame"),
}
TIMEZONES = (
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
ADJECTIVES = _words("big, tiny, silver, golden, orange, crazy, heavy, lazy, happy, sad, brown")
ANIMALS = _words("swan, peacock, bird, leopard, mouse, ostrich, gorilla, bear, fish, wolf")
PASSWORDS = _words("firewall, bubbles, 1111, tigger, picard, marlboro, chocolat, sexy, hawkeye")
