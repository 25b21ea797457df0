"""Query words -> weighted text and image terms, and their combination into one query vector.

Query words (as the shell splits them):
    beach                         a text term; consecutive words form one phrase: a dog on the beach
    beach + sunset - people       `+` and `-` as separate words combine terms
    2:dog + 0.5:@cat.jpg          N: weights a term; @PATH or @https://... is an image term
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from typing import TYPE_CHECKING

from imgsearch.errors import UsageError

if TYPE_CHECKING:  # numpy is not imported at run time: the CLI asking a server never loads it
    import numpy as np

MAX_WEIGHT = 100.0
MAX_TERMS = 16  # each text term is embedded and cached: a query is a few of them, not a document
MAX_QUERY_CHARS = 1_000  # CLIP reads 77 tokens of a text; past this a query is a mistake or an attack
_WEIGHT = re.compile(r"^([+-]?\d+(?:\.\d+)?):(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Term:
    """One part of a query: weight * embedding(value).

    kind: "text" (words), "image" (a file path), "url" (an http(s) image), "photo" (the id of a photo in the
    library: its stored vector, no decoding), "marked" (the same, for relevance feedback: see feedback_terms) or
    "vector" (an embedding computed already, e.g. of an upload).
    """

    weight: float
    kind: str
    value: str
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # kind "vector"


def check_text(query: str) -> str:
    """The query stripped; an empty or overlong one is a usage error."""
    text = (query or "").strip()
    if not text:
        raise UsageError("empty query: give some words to search for, e.g. imgsearch search \"a dog on the beach\"", "query")
    if len(text) > MAX_QUERY_CHARS:
        raise UsageError(f"the query is {len(text):,} characters long: at most {MAX_QUERY_CHARS:,} (the model reads "
                         "the first 77 words or so)", "query")
    return text


def _term(words: list[str], sign: float) -> Term:
    text = " ".join(words).strip()
    weight = 1.0
    match = _WEIGHT.match(text)
    if match:
        weight, text = float(match.group(1)), match.group(2).strip()
        if not abs(weight) <= MAX_WEIGHT:  # 400 digits make inf, and inf makes no ranking at all
            raise UsageError(f"the weight {match.group(1)[:20]}{'...' if len(match.group(1)) > 20 else ''} is out "
                             f"of range: weights are numbers between -{MAX_WEIGHT:g} and {MAX_WEIGHT:g}", "query")
    if not text or text == "@":
        raise UsageError("empty query term: every + or - must be followed by a term (quote phrases: \"a dog\")", "query")
    if text.startswith("@"):
        target = text[1:]
        kind = "url" if re.match(r"^https?://", target, re.IGNORECASE) else "image"
        return Term(sign * weight, kind, target)
    return Term(sign * weight, "text", text)


def parse_query(words: Sequence[str]) -> list[Term]:
    """Words -> terms; raises UsageError naming what is wrong."""
    terms: list[Term] = []
    current: list[str] = []
    sign = 1.0
    for word in words:
        if word in ("+", "-"):
            if current:
                terms.append(_term(current, sign))
                current = []
            elif terms or word == "+":
                raise UsageError(f"'{word}' needs a term before and after it, e.g. beach + sunset - people", "query")
            sign = 1.0 if word == "+" else -1.0
        else:
            current.append(word)
    if current:
        terms.append(_term(current, sign))
    elif terms or sign < 0:
        raise UsageError("the query ends with an operator: put a term after the last + or -", "query")
    if not terms:
        raise UsageError("empty query: give some words to search for, e.g. imgsearch search \"a dog on the beach\"", "query")
    if len(terms) > MAX_TERMS:
        raise UsageError(f"the query has {len(terms)} terms: at most {MAX_TERMS}", "query")
    for term in terms:
        if term.kind == "text":
            check_text(term.value)
    return terms


LIKED_WEIGHT = 0.75  # Rocchio's beta: how far the marked-up photos pull the query (their mean, as one term)...
UNLIKED_WEIGHT = 0.25  # ...and gamma: how far the marked-down ones push it away
MAX_MARKS = 200  # photos marked up or down in one query


def feedback_terms(terms: Sequence[Term], liked: Sequence[int], unliked: Sequence[int]) -> list[Term]:
    """Relevance feedback ("more like these, fewer like those"): the query, plus the mean of the liked photos'
    vectors, minus a smaller weight times the mean of the unliked ones (Rocchio). The terms are kind "marked":
    stored vectors, as `like:ID`, but a liked photo stays among the results (an unliked one does not)."""
    liked, unliked = list(dict.fromkeys(liked)), list(dict.fromkeys(unliked))
    both = set(liked) & set(unliked)
    if both:
        raise UsageError(f"photo {min(both)} is marked both up and down: mark it one way", "like")
    if len(liked) + len(unliked) > MAX_MARKS:
        raise UsageError(f"{len(liked) + len(unliked)} photos are marked: at most {MAX_MARKS}", "like")
    return [*terms, *(Term(LIKED_WEIGHT / len(liked), "marked", str(i)) for i in liked),
            *(Term(-UNLIKED_WEIGHT / len(unliked), "marked", str(i)) for i in unliked)]
