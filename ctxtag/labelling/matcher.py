"""Context keywords in playlist titles (ICASSP 2020 §3.1).

A keyword matches a title when it appears as a whole word, ignoring case and accents:
"#Workout!!" matches workout, "workout" does not match work, "homework" matches nothing.
Multi-word keywords ("road trip") match as consecutive words.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

# A word is a run of letters or digits; "_", "#", punctuation, emoji and spaces separate words.
_WORD = re.compile(r"[^\W_]+")


def normalise(text: str) -> str:
    """Casefold and strip accents so "Détente" == "detente" and "ÇA" == "ca". Letters are also
    folded to their compatibility forms (full-width "ｗｏｒｋｏｕｔ", the ligature "ﬁ"); other characters
    only decompose canonically, so a symbol is not spelt out: "relax™" is relax and a separator
    (NFKD of the whole title made it "relaxtm", a missed match)."""
    if text.isascii():                       # most titles: nothing to fold
        return text.casefold()
    decomposed = "".join(unicodedata.normalize("NFKD" if unicodedata.category(ch)[0] == "L" else "NFD", ch)
                         for ch in text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return stripped.casefold()


def words(text: str) -> list[str]:
    return _WORD.findall(normalise(text))


@lru_cache(maxsize=64)
def _compile(keywords: tuple[str, ...]) -> tuple[dict[str, str], tuple[tuple[tuple[str, ...], str], ...]]:
    single: dict[str, str] = {}
    multi: list[tuple[tuple[str, ...], str]] = []
    for kw in keywords:
        parts = tuple(words(kw))
        if not parts:
            raise ValueError(f"keyword {kw!r} has no letters or digits")
        if len(parts) == 1:
            single[parts[0]] = kw
        else:
            multi.append((parts, kw))
    return single, tuple(multi)


def match_contexts(title: str, keywords: Sequence[str]) -> set[str]:
    """The keywords (as given) that occur in ``title`` as whole words."""
    single, multi = _compile(tuple(keywords))
    toks = words(title)
    found = {single[t] for t in toks if t in single}
    if multi:
        joined = " " + " ".join(toks) + " "
        found.update(kw for parts, kw in multi if " " + " ".join(parts) + " " in joined)
    return found


def match_many(titles: Iterable[str], keywords: Sequence[str]) -> list[set[str]]:
    """match_contexts over many titles, computing each distinct title once."""
    titles = list(titles)
    cache = {t: match_contexts(t, keywords) for t in set(titles)}
    return [cache[t] for t in titles]
