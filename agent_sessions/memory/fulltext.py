"""Keyword search: the words a memory is found by, query terms, and each database's query text.

A memory is found by the words of its string values (never by its JSON keys): they are stored
beside the value in the ``search_text`` column, which the database indexes with its own
full-text search (SQLite FTS5 with the porter stemmer, a PostgreSQL ``english`` tsvector GIN
index, a MariaDB/MySQL FULLTEXT index). A query term matches a word that has the same stem, or
that starts with the term's first letters (``"explain"`` matches ``"explanations"``, which no
stemmer folds together). The score is computed here the same way on every backend: the share of
the query's meaningful terms the memory contains.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from ..serialization import JsonCodec

__all__ = [
    "Term",
    "backfill",
    "boolean_query",
    "fts5_query",
    "query_terms",
    "searchable_text",
    "term_score",
    "tsquery",
]

_WORD = re.compile(r"\w+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_STOPWORDS = frozenset({
    "a", "an", "and", "are", "about", "as", "at", "be", "by", "can", "could", "did", "do",
    "does", "for", "from", "had", "has", "have", "how", "i", "in", "is", "it", "its", "me",
    "my", "of", "on", "or", "our", "should", "so", "that", "the", "their", "them", "they",
    "this", "to", "use", "used", "uses", "was", "we", "were", "what", "when", "where", "which",
    "who", "why", "will", "with", "would", "you", "your",
})  # fmt: skip
# InnoDB's default FULLTEXT stopwords: MariaDB never indexes these, so they cannot be searched.
_INNODB_STOPWORDS = frozenset({
    "a", "about", "an", "are", "as", "at", "be", "by", "com", "de", "en", "for", "from", "how",
    "i", "in", "is", "it", "la", "of", "on", "or", "that", "the", "this", "to", "was", "what",
    "when", "where", "who", "will", "with", "und", "www",
})  # fmt: skip
_INNODB_MIN_TOKEN = 3
_SHORTEST_PREFIX = 4
_LONGEST_QUERY = 32
"""Terms beyond this many are ignored: a pasted paragraph is not a query."""


class Term(NamedTuple):
    """One query word: ``word`` lower-cased, and the ``prefix`` a matching word starts with."""

    word: str
    prefix: str


def searchable_text(value: Mapping[str, Any]) -> str:
    """The text a memory is found by: its string values (at any depth), one per line.

    Characters no database column can hold (NUL, lone surrogates) become spaces: they are
    never part of a word.
    """
    out: list[str] = []
    _strings(value, out)
    text = "\n".join(out).replace("\x00", " ")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub(" ", text)
    return text


def backfill(rows: Iterable[tuple[int, str]]) -> list[tuple[str, int]]:
    """``(search_text, id)`` for stored ``(id, value)`` rows; undecodable values are left out.

    Used once, when a table made before keyword indexing is upgraded: a corrupt row keeps a
    NULL ``search_text`` (and stays where it is, for the reads that report it).
    """
    codec, found = JsonCodec(), []
    for row_id, stored in rows:
        try:
            value = codec.decode(stored)
        except (ValueError, TypeError, RecursionError):
            continue
        if isinstance(value, dict):
            found.append((searchable_text(value), row_id))
    return found


def _strings(value: object, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for child in value.values():
            _strings(child, out)
    elif isinstance(value, list):
        for child in value:
            _strings(child, out)


def _prefix(word: str) -> str:
    # Long words lose their last two letters (most English endings), never below four letters.
    if len(word) <= _SHORTEST_PREFIX:
        return word
    return word[: max(_SHORTEST_PREFIX, len(word) - 2)]


def query_terms(query: str) -> list[Term]:
    """The terms of a query that carry meaning: lower-cased, common words dropped, no repeats."""
    words = _WORD.findall(query.lower())
    meaningful = [w for w in words if w not in _STOPWORDS] or words
    unique = list(dict.fromkeys(meaningful))[:_LONGEST_QUERY]
    return [Term(word, _prefix(word)) for word in unique]


def _fold(word: str) -> str:
    # "tests" matches "test": a plural "s" is the one ending folded both ways.
    return word[:-1] if len(word) > _SHORTEST_PREFIX and word.endswith("s") else word


def term_score(terms: Sequence[Term], value: Mapping[str, Any]) -> float:
    """The share of ``terms`` found among the value's words (0 to 1).

    A term is found when a word equals it (a plural ``s`` aside) or starts with its prefix.
    """
    if not terms:
        return 0.0
    words = set(_WORD.findall(searchable_text(value).lower()))
    folded = {_fold(w) for w in words}
    found = 0
    for term in terms:
        if _fold(term.word) in folded or any(w.startswith(term.prefix) for w in words):
            found += 1
    return found / len(terms)


def fts5_query(terms: Sequence[Term]) -> str:
    """An FTS5 MATCH expression: any term, as itself (porter-stemmed) or as its prefix."""
    parts = []
    for term in terms:
        word, prefix = term.word.replace('"', ""), term.prefix.replace('"', "")
        parts.append(f'"{word}"' if word == prefix else f'"{word}" OR "{prefix}"*')
    return " OR ".join(parts)


def tsquery(terms: Sequence[Term]) -> str:
    """A PostgreSQL ``to_tsquery('english', ...)`` text: any term, stemmed or as a prefix."""
    parts = []
    for term in terms:
        word, prefix = _quoted(term.word), _quoted(term.prefix)
        parts.append(word if word == prefix else f"{word} | {prefix}:*")
    return " | ".join(parts)


def _quoted(word: str) -> str:
    # Words are \w+ runs, so they hold no operator; quoting keeps digits and "_" literal.
    return "'" + word.replace("'", "") + "'"


def boolean_query(terms: Sequence[Term]) -> str | None:
    """A MariaDB/MySQL ``MATCH ... AGAINST (... IN BOOLEAN MODE)`` text, or None.

    None when a term cannot be found through InnoDB's index (shorter than its minimum token
    size, or one of its stopwords): the caller then scans instead, so no term is ignored.
    """
    parts = []
    for term in terms:
        if len(term.word) < _INNODB_MIN_TOKEN or term.word in _INNODB_STOPWORDS:
            return None
        if not term.word.isalnum():  # "_" and other joiners split InnoDB's words
            return None
        parts.append(f"{term.word} {term.prefix}*")
    return " ".join(parts) or None
