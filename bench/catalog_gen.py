"""A large synthetic library for benchmarks: seeded, valid, multilingual, with real media files.

The texts are random but shaped like the real thing: a title of about 60 characters, a summary
of about 200 and a description of about 600 characters, in one to four of en/es/fr/pt, drawn
from word lists with accented words plus generated words (so the search index has a realistic
vocabulary of several thousand tokens per language, with a Zipf-like frequency curve).

    >>> files = Path("/tmp/files")
    >>> data = make_catalog(files, resources=10_000, seed=1)
    >>> install_catalog(DataPaths(Path("/tmp/data")), data, files)
"""

from __future__ import annotations

import hashlib
import itertools
import random
from pathlib import Path

LANGS = ("en", "es", "fr", "pt")

SEED_WORDS = {
    "en": """community radio patrol territory early warning safety guide manual training workshop
        rights land water forest river health women youth elders meeting report evidence map
        mapping phone security digital protection network leader defender village school
        emergency response plan template checklist video audio story campaign court lawyer
        justice violence threat risk memory culture language harvest seed climate mining""",
    "es": """comunidad radio patrulla territorio alerta temprana seguridad guía manual formación
        taller derechos tierra agua bosque río salud mujeres jóvenes mayores reunión informe
        evidencia mapa cartografía teléfono protección red líder defensora aldea escuela
        emergencia respuesta plan plantilla lista vídeo audio historia campaña tribunal abogada
        justicia violencia amenaza riesgo memoria cultura lengua cosecha semilla clima minería
        acción autonomía organización participación información comunicación""",
    "fr": """communauté radio patrouille territoire alerte précoce sécurité guide manuel formation
        atelier droits terre eau forêt rivière santé femmes jeunes aînés réunion rapport preuve
        carte cartographie téléphone protection réseau responsable défenseure village école
        urgence réponse plan modèle liste vidéo audio histoire campagne tribunal avocate justice
        violence menace risque mémoire culture langue récolte semence climat minière éducation
        sécurité élève société été""",
    "pt": """comunidade rádio patrulha território alerta precoce segurança guia manual formação
        oficina direitos terra água floresta rio saúde mulheres jovens anciãos reunião relatório
        prova mapa cartografia telefone proteção rede liderança defensora aldeia escola
        emergência resposta plano modelo lista vídeo áudio história campanha tribunal advogada
        justiça violência ameaça risco memória cultura língua colheita semente clima mineração
        ação organização participação informação comunicação""",
}
STOP = {"en": ["the", "and", "of", "for", "with"], "es": ["de", "la", "el", "y", "para", "con"],
        "fr": ["de", "la", "le", "et", "pour", "avec"], "pt": ["de", "da", "o", "e", "para", "com"]}
SYLLABLES = {
    "en": "ra ti on mo ber ka st ing wa ter li ne co ma por de ve lo sh an".split(),
    "es": "ra ción ma dé ño lo ta rí ca pe mu ni da qui ga be to ría es".split(),
    "fr": "ra tion mé ça lo té pè ri eau ne ge co mu ni ve ré ai our".split(),
    "pt": "ra ção ma lhe ão lo ta ri ça pe mu ni da qui ga be to ria ões".split(),
}
ICONS = "book tool chart people template video sound map radio walk bell handshake camera " \
        "scale megaphone gear lock school".split()
TYPES = ["guides-manuals", "videos-webinars", "digital-tools", "templates", "infographics",
         "podcasts-audio", "reports-studies", "training-curricula", "maps-data", "legal-texts"]
THEMES = ["communication-radio", "patrols", "early-warning", "digital-security", "legal-support",
          "documentation-evidence", "mapping", "health-care", "women-defenders", "youth",
          "land-rights", "water-rivers", "forests", "mining", "climate", "culture-memory",
          "organising", "psychosocial-support"]
STRANDS = ["what-works", "what-is-needed", "lessons-learned"]
PUBLISHERS = ["Ondas del Territorio", "Guardia Indígena", "Rede de Defensoras", "Coalition team",
              "Réseau Terre et Eau", "Coletivo Mapeando", "Radio Comunitaria Sur",
              "Observatório da Floresta", "Front Line Partners", "Asociación Semillas"] + \
             [f"Publisher {n}" for n in range(40)]
COUNTRIES = ["CO", "BR", "PE", "GT", "HN", "MX", "BO", "EC", "CD", "CM", "SN", "PH", "ID", "KE"]
REGIONS = ["Latin America", "West Africa", "Central Africa", "South-East Asia", "East Africa"]

VIDEO_BYTES = 20 * 1024 * 1024
VIDEO_NAME = "patrol-training.mp4"


def _label(rng: random.Random, base: str) -> dict[str, str]:
    words = base.replace("-", " ")
    return {"en": words.capitalize(), "es": f"{words.capitalize()} (es)",
            "fr": f"{words.capitalize()} (fr)", "pt": f"{words.capitalize()} (pt)"}


def taxonomy(rng: random.Random) -> dict:
    def entries(ids: list[str], with_icon: bool) -> list[dict]:
        out = []
        for n, entry_id in enumerate(ids):
            entry = {"id": entry_id, "label": _label(rng, entry_id),
                     "description": {"en": f"Resources about {entry_id.replace('-', ' ')}."}}
            if with_icon:
                entry["icon"] = ICONS[n % len(ICONS)]
            out.append(entry)
        return out
    return {"types": entries(TYPES, True), "themes": entries(THEMES, True),
            "strands": entries(STRANDS, False)}


class TextMaker:
    """Zipf-distributed words per language: seed words first (most frequent), then made-up ones."""

    def __init__(self, rng: random.Random, generated_per_language: int = 4000):
        self.rng = rng
        self.words: dict[str, list[str]] = {}
        self.weights: dict[str, list[float]] = {}
        for lang in LANGS:
            seen = dict.fromkeys(SEED_WORDS[lang].split())
            syllables = SYLLABLES[lang]
            while len(seen) < len(SEED_WORDS[lang].split()) + generated_per_language:
                seen.setdefault("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
            words = list(seen)
            self.words[lang] = words
            self.weights[lang] = list(itertools.accumulate(1.0 / (rank + 3) for rank in range(len(words))))

    def sentence(self, lang: str, chars: int) -> str:
        words: list[str] = []
        length = 0
        while length < chars:
            if words and self.rng.random() < 0.15:
                word = self.rng.choice(STOP[lang])
            else:
                word = self.rng.choices(self.words[lang], cum_weights=self.weights[lang])[0]
            words.append(word)
            length += len(word) + 1
        text = " ".join(words)
        return text[0].upper() + text[1:]

    def paragraphs(self, lang: str, chars: int) -> str:
        parts = []
        while sum(map(len, parts)) < chars:
            parts.append(self.sentence(lang, self.rng.randint(120, 250)) + ".")
        return "\n\n".join(" ".join(parts[i:i + 2]) for i in range(0, len(parts), 2))


def _write_file(files_dir: Path, name: str, data: bytes, media_type: str, **more) -> dict:
    (files_dir / name).write_bytes(data)
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
            "media_type": media_type, **more}


def media_files(files_dir: Path, rng: random.Random) -> dict[str, dict]:
    """A 20 MiB 'video' of random bytes plus a few small files; returns file entries by role."""
    files_dir.mkdir(parents=True, exist_ok=True)
    video = rng.randbytes(VIDEO_BYTES)
    return {
        "video": _write_file(files_dir, VIDEO_NAME, video, "video/mp4", duration=900, language="es"),
        "pdf": _write_file(files_dir, "guide.pdf", b"%PDF-1.4\n" + rng.randbytes(300_000),
                           "application/pdf", language="en"),
        "audio": _write_file(files_dir, "episode.mp3", b"ID3" + rng.randbytes(1_500_000),
                             "audio/mpeg", duration=600, language="pt"),
        "image": _write_file(files_dir, "poster.jpg", b"\xff\xd8\xff\xe0" + rng.randbytes(40_000),
                             "image/jpeg"),
    }


def make_catalog(files_dir: Path, *, resources: int = 10_000, seed: int = 20261001) -> dict:
    rng = random.Random(seed)
    files = media_files(files_dir, rng)
    text = TextMaker(rng)
    items = []
    for n in range(resources):
        langs = rng.sample(LANGS, rng.choices((1, 2, 3, 4), weights=(5, 3, 1, 1))[0])
        described = langs[:rng.randint(1, min(2, len(langs)))]
        item = {
            "id": f"res-{n:05d}-{rng.choice(THEMES)}",
            "title": {lang: text.sentence(lang, rng.randint(40, 75)) for lang in langs},
            "summary": {lang: text.sentence(lang, rng.randint(150, 250)) + "." for lang in langs},
            "description": {lang: text.paragraphs(lang, rng.randint(450, 750)) for lang in described},
            "type": rng.choice(TYPES),
            "themes": rng.sample(THEMES, rng.randint(1, 3)),
            "strand": rng.choice(STRANDS),
            "languages": sorted(langs),
            "publisher": rng.choice(PUBLISHERS),
            "year": rng.randint(2005, 2026),
            "licence": rng.choice(["CC BY 4.0", "CC BY-SA 4.0", "CC BY-NC 4.0"]),
            "tags": sorted({text.sentence(rng.choice(langs), 3).lower() for _ in range(rng.randint(0, 5))}),
            "added": f"20{rng.randint(20, 26)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        }
        if rng.random() < 0.5:
            item["region"] = rng.choice(REGIONS)
            item["countries"] = sorted(rng.sample(COUNTRIES, rng.randint(1, 3)))
        roll = rng.random()
        if n % 50 == 0:
            item["files"] = [files["video"], files["image"]]
            item["thumbnail"] = files["image"]["sha256"]
        elif roll < 0.2:
            item["files"] = [files["pdf"]]
        elif roll < 0.3:
            item["files"] = [files["audio"], files["image"]]
            item["thumbnail"] = files["image"]["sha256"]
        else:
            item["files"] = []
            item["link"] = f"https://example.org/resource/{n}"
        items.append(item)
    return {
        "format": 1,
        "library": {"id": "bench", "version": 1,
                    "title": {"en": "Benchmark library", "es": "Biblioteca de prueba",
                              "fr": "Bibliothèque d'essai", "pt": "Biblioteca de teste"}},
        "taxonomy": taxonomy(rng),
        "resources": items,
    }


def search_queries(data: dict, count: int, seed: int = 7) -> list[str]:
    """Distinct queries people might type: one or two words from titles, some unaccented,
    some cut short (the last word matches as a prefix)."""
    import unicodedata

    rng = random.Random(seed)
    queries: dict[str, None] = {}
    resources = data["resources"]
    attempts = 0
    while len(queries) < count and attempts < count * 50:
        attempts += 1
        title = rng.choice(list(rng.choice(resources)["title"].values()))
        stop = {word for words in STOP.values() for word in words}
        words = [w for w in title.lower().split() if len(w) > 3 and w not in stop]
        if not words:
            continue
        picked = rng.sample(words, min(len(words), rng.choice((1, 1, 2))))
        if rng.random() < 0.3:
            picked[-1] = picked[-1][:max(3, len(picked[-1]) - 2)]
        query = " ".join(picked)
        if rng.random() < 0.3:
            query = "".join(c for c in unicodedata.normalize("NFKD", query) if not unicodedata.combining(c))
        queries.setdefault(query)
    return list(queries)
