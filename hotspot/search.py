"""In-memory full-text index over the library's resources, all languages at once.

Search must be accent- and case-insensitive ("proteccion" finds "Protección"), answer while
the user types (the last query word also matches as a prefix) and fit in a few megabytes on a
Raspberry Pi, so the index keeps no texts: only a sorted vocabulary and, per token, a slice of
one shared array of document numbers and one of 1-byte scores.

    >>> index = SearchIndex([
    ...     (0, {"title": ["Community radio basics", "Radio comunitaria"], "tags": ["radio"]}),
    ...     (1, {"title": ["Protección de datos"], "description": ["Una radio segura."]}),
    ... ])
    >>> index.search("radi")
    [0, 1]
    >>> index.search("PROTECCION radio")
    [1]
    >>> index.search("radio", within={1})
    [1]

Matching rules
    * Every query term must match (AND). Stop words ("the", "de", "la", ...) are neither
      indexed nor searched; a query made only of stop words finds nothing.
    * A term matches the token equal to it. The *last* term also matches tokens it is a prefix
      of (search as you type), when it has at least ``MIN_PREFIX_LENGTH`` characters; only the
      ``MAX_PREFIX_EXPANSIONS`` most frequent completions are used, which bounds the work.
      Earlier terms are exact because they are words the user has finished typing.

Scoring
    Per matched token and document: the sum over fields of ``FIELD_WEIGHTS[field] * sat(tf)``
    where ``sat`` is the BM25 saturation ``tf * (K1 + 1) / (K1 + tf)`` and ``tf`` is
    length-normalised per text and the maximum over the field's texts (one text per language:
    a resource translated into four languages does not count four times). Saturating per field
    keeps a long description from outscoring a title match. That value is stored in one byte
    (log scale) and multiplied at query time by the token's idf. Prefix completions use the
    idf of the whole completion group times ``PREFIX_FACTOR``, so an exact match always scores
    above a completion with the same field score. Ties are broken by document number.

The index is immutable once built, so waitress threads may share it without a lock.
"""

from __future__ import annotations

import heapq
import math
import re
import sys
import unicodedata
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from math import log1p

__all__ = ["FIELD_WEIGHTS", "STOP_WORDS", "SearchIndex", "normalize", "tokenize"]

FIELD_WEIGHTS = {"title": 6.0, "tags": 4.0, "publisher": 3.0, "summary": 2.0, "description": 1.0}

# BM25 length normalisation. The typical lengths (in words) are fixed rather than measured so
# the index is built in one pass over an iterator; they only shape the curve, not the matching.
_LENGTH_B = {"title": 0.3, "tags": 0.0, "publisher": 0.3, "summary": 0.5, "description": 0.75}
_TYPICAL_LENGTH = {"title": 8, "tags": 2, "publisher": 4, "summary": 30, "description": 120}
K1 = 1.2

MIN_PREFIX_LENGTH = 3
MAX_PREFIX_EXPANSIONS = 200
PREFIX_FACTOR = 0.9

# Tiny on purpose: only words that carry no meaning in any of the languages we serve.
# (Not "un": the United Nations; not "it": information technology; not "no".)
STOP_WORDS = frozenset(
    """
    the and of for to in on with an or is are by from at as
    de la el los las del en con por para al que y
    le les des du et pour une au aux par sur dans
    da do das dos em com um uma na nas nos ao
    """.split()
)

# Letters NFKD does not decompose; ß is already "ss" after casefold().
_LETTER_FOLDS = {"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i"}
_NON_ALNUM = re.compile(r"[\W_]+")

# One byte per (token, document) score, on a log scale: fine resolution for the small scores
# of description-only matches, coarser where the differences are large anyway.
_MAX_FIELD_SCORE = sum(FIELD_WEIGHTS.values()) * (K1 + 1)
_QUANT_SCALE = 255 / math.log1p(_MAX_FIELD_SCORE)
_DECODE = tuple(math.expm1(q / _QUANT_SCALE) for q in range(256))


def normalize(text: str) -> str:
    """Casefold, strip diacritics, turn every run of non-alphanumerics into one space.

    >>> normalize("  Protección  CIVIL: São-Paulo / Straße ")
    'proteccion civil sao paulo strasse'
    """
    text = text.casefold()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        # Look at each distinct character once instead of every character: a description
        # has thousands of characters but only a few dozen distinct ones.
        for char in set(text):
            if char < "\x80":
                continue
            fold = _LETTER_FOLDS.get(char)
            if fold is not None:
                text = text.replace(char, fold)
            elif unicodedata.combining(char):
                text = text.replace(char, "")
    return _NON_ALNUM.sub(" ", text).strip()


def tokenize(text: str) -> list[str]:
    """Normalised words, without one-letter words (single digits are kept).

    Stop words are kept here; the index drops them.

    >>> tokenize("L'éducation à la radio, 2 x 3")
    ['education', 'la', 'radio', '2', '3']
    """
    return [token for token in normalize(text).split() if len(token) > 1 or token.isdigit()]


def _index_tokens(text: str) -> list[str]:
    return [token for token in tokenize(text) if token not in STOP_WORDS]


def _idf(document_count: int, frequency: int) -> float:
    return math.log(1.0 + (document_count - frequency + 0.5) / (frequency + 0.5))


class SearchIndex:
    """Ranked AND search over documents numbered 0..n-1.

    ``documents`` yields ``(number, {field: texts})`` with numbers 0, 1, 2, ... in order;
    ``texts`` holds the field in every language (a lone string is accepted too). Fields not in
    ``FIELD_WEIGHTS`` are ignored.
    """

    def __init__(self, documents: Iterable[tuple[int, Mapping[str, Iterable[str]]]]):
        # token -> interleaved [doc, score, doc, score, ...]; one array per token keeps the
        # build's peak memory near the final size instead of millions of Python ints.
        building: dict[str, array] = {}
        typecode = "H"
        count = 0
        for number, fields in documents:
            if number != count:
                raise ValueError(f"document numbers must be 0, 1, 2, ... in order; got {number} after {count - 1}")
            if count == 0x10000:
                typecode = "I"
                building = {token: array("I", postings) for token, postings in building.items()}
            count += 1
            for token, score in self._document_scores(fields).items():
                postings = building.get(token)
                if postings is None:
                    postings = building[token] = array(typecode)
                postings.append(number)
                # One byte on a log scale (see _DECODE); this line runs once per posting.
                quantized = round(log1p(score) * _QUANT_SCALE)
                postings.append(255 if quantized > 255 else quantized or 1)

        self._count = count
        self._vocabulary: list[str] = sorted(building)
        self._offsets = array("I", [0])
        self._documents = array(typecode)
        self._scores = array("B")
        for token in self._vocabulary:
            postings = building.pop(token)
            self._documents.extend(postings[0::2])
            self._scores.fromlist(postings[1::2].tolist())
            self._offsets.append(len(self._documents))

    @staticmethod
    def _document_scores(fields: Mapping[str, Iterable[str]]) -> dict[str, float]:
        scores: dict[str, float] = {}
        for field, texts in fields.items():
            weight = FIELD_WEIGHTS.get(field)
            if weight is None or texts is None:
                continue
            if isinstance(texts, str):
                texts = (texts,)
            b, typical = _LENGTH_B[field], _TYPICAL_LENGTH[field]
            best: dict[str, float] = {}
            for text in texts:
                tokens = _index_tokens(text)
                if not tokens:
                    continue
                length_norm = 1.0 - b + b * len(tokens) / typical
                for token, frequency in Counter(tokens).items():
                    tf = frequency / length_norm
                    if tf > best.get(token, 0.0):
                        best[token] = tf
            for token, tf in best.items():
                scores[token] = scores.get(token, 0.0) + weight * tf * (K1 + 1) / (K1 + tf)
        return scores

    def __len__(self) -> int:
        return self._count

    @property
    def vocabulary_size(self) -> int:
        return len(self._vocabulary)

    def approximate_bytes(self) -> int:
        """Memory held by the index (arrays, vocabulary list and its strings)."""
        arrays = sum(a.buffer_info()[1] * a.itemsize + 64 for a in (self._offsets, self._documents, self._scores))
        strings = sum(map(sys.getsizeof, self._vocabulary))
        return arrays + sys.getsizeof(self._vocabulary) + strings

    # -- query -------------------------------------------------------------------------------

    def _term_matches(self, token: str, prefix: bool) -> tuple[int, list[tuple[int, int, float]]]:
        """(total postings, [(start, end, weight)]) for one query term; empty when no match."""
        vocabulary, offsets = self._vocabulary, self._offsets
        low = bisect_left(vocabulary, token)
        exact = low < len(vocabulary) and vocabulary[low] == token
        if not (prefix and len(token) >= MIN_PREFIX_LENGTH):
            if not exact:
                return 0, []
            start, end = offsets[low], offsets[low + 1]
            return end - start, [(start, end, _idf(self._count, end - start))]

        above = token[:-1] + chr(ord(token[-1]) + 1)
        high = bisect_left(vocabulary, above, low)
        completions = range(low + 1 if exact else low, high)
        if len(completions) > MAX_PREFIX_EXPANSIONS:
            completions = heapq.nlargest(
                MAX_PREFIX_EXPANSIONS, completions, key=lambda i: offsets[i + 1] - offsets[i]
            )
        ids = ([low] if exact else []) + list(completions)
        total = sum(offsets[i + 1] - offsets[i] for i in ids)
        if not total:
            return 0, []
        group_weight = PREFIX_FACTOR * _idf(self._count, min(total, self._count))
        matches = []
        for i in ids:
            start, end = offsets[i], offsets[i + 1]
            weight = _idf(self._count, end - start) if exact and i == low else group_weight
            matches.append((start, end, weight))
        return total, matches

    def _union(self, matches: list[tuple[int, int, float]]) -> dict[int, float]:
        """doc -> best score over the term's matching tokens."""
        documents, scores = self._documents, self._scores
        # The longest list goes through C-level dict(zip(...)); the others are merged by hand.
        matches = sorted(matches, key=lambda m: m[0] - m[1])
        start, end, weight = matches[0]
        found = dict(zip(documents[start:end], map(weight.__mul__, map(_DECODE.__getitem__, scores[start:end]))))
        get = found.get
        for start, end, weight in matches[1:]:
            for number, quantized in zip(documents[start:end], scores[start:end]):
                value = _DECODE[quantized] * weight
                if value > get(number, 0.0):
                    found[number] = value
        return found

    def _intersect(self, candidates: dict[int, float], matches: list[tuple[int, int, float]]) -> dict[int, float]:
        """Candidates that match the term, with the term's best score added."""
        documents, scores = self._documents, self._scores
        found: dict[int, float] = {}
        get = found.get
        for start, end, weight in matches:
            if len(candidates) * 16 < end - start:
                # Few candidates, long list: binary search (the list is sorted by document).
                for number in candidates:
                    i = bisect_left(documents, number, start, end)
                    if i < end and documents[i] == number:
                        value = _DECODE[scores[i]] * weight
                        if value > get(number, 0.0):
                            found[number] = value
            elif len(matches) == 1:
                # One token, two long lists: let C do the work, no max() to take.
                values = map(weight.__mul__, map(_DECODE.__getitem__, scores[start:end]))
                listed_get = dict(zip(documents[start:end], values)).get
                return {
                    number: score + value
                    for number, score in candidates.items()
                    if (value := listed_get(number)) is not None
                }
            else:
                listed = dict(zip(documents[start:end], scores[start:end]))
                for number in candidates.keys() & listed.keys():
                    value = _DECODE[listed[number]] * weight
                    if value > get(number, 0.0):
                        found[number] = value
        return {number: candidates[number] + value for number, value in found.items()}

    def search(self, query: str, *, within: Collection[int] | None = None, limit: int | None = None) -> list[int]:
        """Document numbers matching every term of ``query``, best first.

        ``within`` restricts the result to those documents (before ranking and ``limit``).
        """
        if limit is not None and limit <= 0:
            return []
        tokens = _index_tokens(query)
        if not tokens:
            return []
        last = tokens[-1]
        terms = []
        for token in dict.fromkeys(tokens):
            total, matches = self._term_matches(token, prefix=token == last)
            if not matches:
                return []
            terms.append((total, matches))
        terms.sort(key=lambda term: term[0])

        candidates: dict[int, float] | None = None
        if within is not None:
            if not isinstance(within, (set, frozenset)):
                within = set(within)
            if len(within) < terms[0][0]:
                candidates = {number: 0.0 for number in sorted(within) if 0 <= number < self._count}
        for _, matches in terms:
            if candidates is None:
                candidates = self._union(matches)
                if within is not None:
                    candidates = {number: candidates[number] for number in candidates.keys() & within}
            else:
                candidates = self._intersect(candidates, matches)
            if not candidates:
                return []

        # sorted() and nlargest() are stable: equal scores stay in document order.
        ordered = sorted(candidates)
        if limit is not None and limit < len(ordered):
            return heapq.nlargest(limit, ordered, key=candidates.__getitem__)
        return sorted(ordered, key=candidates.__getitem__, reverse=True)
