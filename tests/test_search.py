"""Tests for hotspot.search: normalisation, matching, ranking, and a 10,000-document corpus."""

from __future__ import annotations

import random
import time
import tracemalloc
from itertools import accumulate

import pytest

from hotspot.search import (
    MAX_PREFIX_EXPANSIONS,
    MIN_PREFIX_LENGTH,
    STOP_WORDS,
    SearchIndex,
    normalize,
    tokenize,
)

# -- normalize / tokenize -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Protección", "proteccion"),
        ("FRANÇAIS", "francais"),
        ("São João", "sao joao"),
        ("Niño añejo", "nino anejo"),
        ("Über Müller", "uber muller"),
        ("Straße", "strasse"),
        ("STRASSE", "strasse"),
        ("Æsop œuvre Ørsted Łódź Đorđe", "aesop oeuvre orsted lodz dorde"),
        ("  hello,  world!!  ", "hello world"),
        ("e-mail / SMS_alert (v2.0)", "e mail sms alert v2 0"),
        ("", ""),
        ("!!! --- ???", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


def test_normalize_precomposed_and_decomposed_agree():
    precomposed = "protecci\u00f3n"
    decomposed = "proteccio\u0301n"
    assert normalize(precomposed) == normalize(decomposed) == "proteccion"


def test_normalize_mixed_scripts_does_not_crash():
    text = "Радио 日本語 Ελληνικά العربية हिन्दी 🎙️ radio"
    result = normalize(text)
    assert "радио" in result.split()
    assert "ελληνικα" in result.split()
    assert result.split()[-1] == "radio"
    assert "🎙" not in result


def test_normalize_control_characters_and_surrogates():
    text = "abc\x00def\x01\x1b[31mred\x7f\udcff\ufffd\u200b end"
    result = normalize(text)
    assert result == "abc def 31mred end"
    assert all(c.isalnum() or c == " " for c in result)


def test_normalize_very_long_text():
    text = ("Protección civil, " * 50_000) + "\x00" * 10_000
    result = normalize(text)
    assert result.startswith("proteccion civil proteccion")
    assert len(result.split()) == 100_000


def test_normalize_binary_ish_text():
    binary = bytes(range(256)).decode("latin-1") * 10 + bytes(range(256)).decode("utf-8", "surrogateescape")
    result = normalize(binary)
    assert "  " not in result
    assert result == result.strip()
    tokenize(binary)


def test_tokenize_drops_single_letters_but_keeps_digits():
    assert tokenize("a b 2 x 10 ab") == ["2", "10", "ab"]
    assert tokenize("À l'école, O Brasil é grande") == ["ecole", "brasil", "grande"]


def test_tokenize_keeps_stop_words_the_index_drops_them():
    assert tokenize("The radio de la comunidad") == ["the", "radio", "de", "la", "comunidad"]
    assert {"the", "de", "la"} <= STOP_WORDS


# -- search on a small library ----------------------------------------------------------------

SMALL = [
    {  # 0
        "title": ["Protección de datos personales", "Personal data protection"],
        "summary": ["Cómo proteger la información de la comunidad."],
        "tags": ["privacy", "datos"],
        "publisher": ["Fundación Karisma"],
    },
    {  # 1
        "title": ["Community radio basics", "Radio comunitaria básica"],
        "summary": ["Setting up a low-power FM station."],
        "description": ["Antennas, transmitters and licences for a community station."],
        "tags": ["radio", "early warning"],
        "publisher": ["Coalition demo team"],
    },
    {  # 2
        "title": ["Early warning systems"],
        "description": ["Using radio and SMS to warn neighbours before a flood."],
        "tags": ["floods"],
    },
    {  # 3
        "title": ["Guide de la radio communautaire"],
        "summary": ["Produire des émissions locales."],
        "publisher": ["Radios du Monde"],
    },
    {  # 4
        "title": ["Radiodifusão comunitária no Brasil"],
        "summary": ["Manual de proteção para comunicadores."],
        "description": ["PROTECCION y seguridad digital."],
    },
]


@pytest.fixture(scope="module")
def small():
    return SearchIndex(enumerate(SMALL))


def test_len(small):
    assert len(small) == 5
    assert len(SearchIndex([])) == 0
    assert SearchIndex([]).search("radio") == []


def test_accent_and_case_insensitive_both_ways(small):
    assert set(small.search("proteccion")) == {0, 4}
    assert set(small.search("PROTECCIÓN")) == {0, 4}
    assert set(small.search("protección")) == {0, 4}
    assert small.search("comunitaria") == small.search("COMUNITÁRIA")
    assert 4 in small.search("comunitaria")


def test_and_semantics(small):
    assert set(small.search("early warning")) == {1, 2}
    assert small.search("warning flood") == [2]
    assert small.search("radio privacy") == []
    assert small.search("privacy radio") == []


def test_prefix_on_last_term(small):
    assert set(small.search("radi")) == {1, 2, 3, 4}  # radio, radios, radiodifusao
    assert small.search("radiodif") == [4]
    assert set(small.search("proteç")) == {0, 4}  # protection, proteccion, protecao
    assert small.search("early warn") == small.search("early warning")


def test_prefix_only_on_last_term(small):
    # "radi" is not a finished word when another word follows it.
    assert small.search("radi early") == []
    assert set(small.search("radio early")) == {1, 2}


def test_short_last_term_is_exact(small):
    assert len("fm") < MIN_PREFIX_LENGTH
    assert small.search("fm") == [1]
    assert small.search("pr") == []


def test_exact_scores_above_prefix_completion():
    index = SearchIndex(enumerate([{"title": ["Radios"]}, {"title": ["Radio"]}]))
    assert index.search("radio") == [1, 0]


def test_title_match_outranks_description_only():
    docs = [
        {"title": ["Water guide"], "description": ["How to keep a radio working during floods."]},
        {"title": ["Radio guide"], "description": ["How to keep water clean during floods."]},
    ]
    assert SearchIndex(enumerate(docs)).search("radio") == [1, 0]


def test_term_in_two_fields_outranks_one():
    docs = [
        {"title": ["Radio handbook"], "tags": ["manual"]},
        {"title": ["Radio handbook"], "tags": ["radio"]},
        {"title": ["Radio handbook"], "tags": ["manual"], "summary": ["All about radio."]},
    ]
    assert SearchIndex(enumerate(docs)).search("radio") == [1, 2, 0]


def test_ties_broken_by_document_number():
    docs = [{"title": ["Same title"]} for _ in range(20)]
    index = SearchIndex(enumerate(docs))
    assert index.search("same") == list(range(20))
    assert index.search("same", limit=5) == list(range(5))


def test_rarer_term_weighs_more():
    docs = [{"title": ["radio"]} for _ in range(10)]
    docs.append({"title": ["radio"], "summary": ["antenna"]})
    docs.append({"title": ["antenna"], "summary": ["radio"]})
    index = SearchIndex(enumerate(docs))
    assert index.search("radio antenna") == [11, 10]


def test_within_filter(small):
    assert set(small.search("radio", within={1, 3, 0})) == {1, 3}
    assert small.search("radio", within=[4]) == [4]  # "radiodifusão" completes the last term
    assert small.search("radio basics", within=[4]) == []
    assert small.search("radio", within=set()) == []
    assert small.search("radio", within=range(100, 200)) == []
    full = small.search("radi")
    assert small.search("radi", within=range(5)) == full
    assert small.search("radi", within=[3, 1]) == [d for d in full if d in (1, 3)]


def test_limit(small):
    full = small.search("radi")
    assert len(full) == 4
    assert small.search("radi", limit=2) == full[:2]
    assert small.search("radi", limit=100) == full
    assert small.search("radi", limit=0) == []


def test_unknown_words_and_empty_queries(small):
    assert small.search("zzzyx") == []
    assert small.search("radio zzzyx") == []
    assert small.search("") == []
    assert small.search("   ,;!  ") == []
    assert small.search("the de la") == []  # only stop words
    assert set(small.search("the radio")) == set(small.search("radio"))


def test_unknown_fields_ignored_and_bare_string_accepted():
    index = SearchIndex(enumerate([{"secret": ["hidden words"], "title": "Plain string title"}]))
    assert index.search("hidden") == []
    assert index.search("plain string") == [0]


def test_document_numbers_must_be_dense():
    with pytest.raises(ValueError):
        SearchIndex([(1, {"title": ["x"]})])


def test_very_long_query_does_not_blow_up(small):
    assert small.search("radio " * 2_000) == small.search("radio")
    assert small.search("x" * 10_000) == []
    words = " ".join(f"word{i}" for i in range(1_500))
    assert small.search(words[:10_000]) == []
    assert small.search("\x00\udcff" * 5_000) == []


# -- a 10,000-document corpus -----------------------------------------------------------------

SEED_WORDS = {
    "en": "radio community protection data safety guide water flood warning health school "
    "women rights land forest river map phone message network training meeting justice".split(),
    "es": "radio comunidad protección datos seguridad guía agua inundación alerta salud escuela "
    "mujeres derechos tierra bosque río mapa teléfono mensaje red formación reunión justicia".split(),
    "fr": "radio communauté protection données sécurité guide eau inondation alerte santé école "
    "femmes droits terre forêt rivière carte téléphone message réseau formation réunion justice".split(),
    "pt": "rádio comunidade proteção dados segurança guia água inundação alerta saúde escola "
    "mulheres direitos terra floresta rio mapa telefone mensagem rede formação reunião justiça".split(),
}
SYLLABLES = "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi la le li lo lu ma me mi mo mu " \
    "na ne ni no nu pa pe pi po pu ra re ri ro ru sa se si so su ta te ti to tu ção ñe é ã ô".split()


def make_vocabulary(rng: random.Random) -> dict[str, list[str]]:
    vocabulary = {}
    for language, seeds in SEED_WORDS.items():
        words = set()
        while len(words) < 2_500:
            words.add("".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))))
        # Seed words first: with Zipf-like sampling below they are the common words.
        vocabulary[language] = seeds + sorted(words)
    return vocabulary


def make_corpus(count: int = 10_000, seed: int = 1234) -> list[dict[str, list[str]]]:
    rng = random.Random(seed)
    vocabulary = make_vocabulary(rng)
    cumulative = {
        lang: list(accumulate(1 / (rank + 1) for rank in range(len(words)))) for lang, words in vocabulary.items()
    }

    def sentence(language, size):
        return " ".join(rng.choices(vocabulary[language], cum_weights=cumulative[language], k=size)).capitalize() + "."

    publishers = [f"{sentence('en', 2)} Collective" for _ in range(60)]
    corpus = []
    for _ in range(count):
        languages = rng.sample(list(vocabulary), rng.randint(1, 4))
        corpus.append(
            {
                "title": [sentence(lang, rng.randint(3, 8)) for lang in languages],
                "summary": [sentence(lang, rng.randint(10, 30)) for lang in languages],
                "description": [sentence(lang, rng.randint(30, 90)) for lang in languages],
                "tags": [" ".join(rng.choices(vocabulary["en"][:60], k=rng.randint(1, 2))) for _ in range(3)],
                "publisher": [rng.choice(publishers)],
            }
        )
    return corpus


def brute_force(corpus_words: list[set[str]], query: str) -> set[int]:
    """Every document whose words include every query term (the last one as a prefix)."""
    terms = [t for t in tokenize(query) if t not in STOP_WORDS]
    if not terms:
        return set()
    *finished, last = terms
    prefix = len(last) >= MIN_PREFIX_LENGTH
    found = set()
    for number, words in enumerate(corpus_words):
        if not all(t in words for t in finished):
            continue
        if last in words or (prefix and any(w.startswith(last) for w in words)):
            found.add(number)
    return found


@pytest.fixture(scope="module")
def corpus():
    return make_corpus()


@pytest.fixture(scope="module")
def corpus_words(corpus):
    return [{w for texts in fields.values() for text in texts for w in tokenize(text)} for fields in corpus]


@pytest.fixture(scope="module")
def big(corpus):
    started = time.perf_counter()
    index = SearchIndex(enumerate(corpus))
    build_seconds = time.perf_counter() - started
    print(
        f"\n10k build: {build_seconds:.2f} s, vocabulary {index.vocabulary_size} tokens, "
        f"{len(index._documents)} postings, {index.approximate_bytes() / 1e6:.1f} MB by estimate"
    )
    return index


def test_big_corpus_memory(corpus):
    # A second build under tracemalloc (which slows it down several times), so the timed
    # build above is not distorted.
    tracemalloc.start()
    index = SearchIndex(enumerate(corpus))
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"\n10k memory (tracemalloc): index retains {retained / 1e6:.1f} MB, build peak {peak / 1e6:.1f} MB")
    assert len(index) == len(corpus)


QUERIES = [
    "radio",
    "proteccion",
    "PROTEÇÃO dados",
    "community radio",
    "saude escola",
    "guia agua rede",
    "justice form",  # prefix: formation, formação
    "reunia",
    "the water",
    "bebe",
    "women rights land forest",
]


@pytest.mark.parametrize("query", QUERIES)
def test_big_corpus_matches_brute_force(corpus_words, big, query):
    *_, last = tokenize(query)
    completions = {w for words in corpus_words for w in words if w.startswith(last)}
    assert len(completions) <= MAX_PREFIX_EXPANSIONS, "brute force ignores the expansion cap"
    result = big.search(query)
    assert len(result) == len(set(result))
    expected = brute_force(corpus_words, query)
    assert expected, "pick queries that find something"
    assert set(result) == expected


def test_big_corpus_within_and_limit_agree_with_full_ranking(big):
    full = big.search("radio comunidade")
    assert len(full) > 50
    within = set(range(0, 10_000, 7))
    assert big.search("radio comunidade", within=within) == [d for d in full if d in within]
    small_within = {full[-1], full[0], 3}
    assert big.search("radio comunidade", within=small_within) == [d for d in full if d in small_within]
    assert big.search("radio comunidade", limit=10) == full[:10]


def test_big_corpus_query_time(big):
    # Seed words are the most frequent words (in most documents: a worst case); generated
    # words further down the Zipf curve are more like a typical query.
    vocabulary = make_vocabulary(random.Random(1234))
    typical = [
        f"{vocabulary['es'][300]} {vocabulary['es'][900]}",
        vocabulary["fr"][1500],
        f"{vocabulary['pt'][200]} {vocabulary['pt'][700][:4]}",
    ]
    timings = {}
    for query in ["radio", "proteccion dados", "community radio", "comu", "justice form", *typical, "zzz"]:
        big.search(query, limit=20)
        rounds = 50
        started = time.perf_counter()
        for _ in range(rounds):
            hits = big.search(query, limit=20)
        elapsed = (time.perf_counter() - started) / rounds
        timings[query] = f"{elapsed * 1e3:.2f} ms ({len(big.search(query))} hits)"
        assert len(hits) <= 20
    print("\n10k query times (limit=20): " + "; ".join(f"{q!r}: {t}" for q, t in timings.items()))
