"""Terminology normalisation from a user glossary: variants -> the preferred term.

    glossary = Glossary({"error": ["bug", "glitch"], "sign in": ["log in", "log-in", "signin"]})
    text, counts = glossary.apply("Found a Bug after I LOG IN")  # "Found an... Error after I SIGN IN"

Whole words only (`debug` is not `bug`), the case of the replaced text is kept (lower, Title, UPPER),
and code spans and URLs are never touched. Variants are matched case-insensitively; spaces in a variant
also match hyphens and runs of whitespace ("log in" matches "log  in").
"""

from __future__ import annotations

import re
from collections import Counter

from chattune.data.clean import split_protected


class Glossary:
    def __init__(self, terms: dict[str, list[str]]):
        self.canonical: dict[str, str] = {}  # lower-cased variant -> preferred term
        for term, variants in terms.items():
            for v in variants:
                key = _key(v)
                if key and key != _key(term):
                    self.canonical[key] = term
        alts = "|".join(
            r"[\s-]+".join(re.escape(w) for w in re.split(r"[\s-]+", v))
            for v in sorted(self.canonical, key=len, reverse=True)
        )
        self.pattern = re.compile(rf"(?<![\w-])(?:{alts})(?![\w-])", re.IGNORECASE) if alts else None
        words = sorted({w for v in self.canonical for w in re.split(r"[\s-]+", v)}, key=len, reverse=True)
        # A cheap pre-check on the first word of each variant: skips the protected-span split for most texts.
        self.quick = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE) if words else None

    def apply(self, text: str) -> tuple[str, Counter[str]]:
        """Replace every variant outside code spans and URLs; count replacements per preferred term."""
        counts: Counter[str] = Counter()
        if self.pattern is None or self.quick is None or not self.quick.search(text):
            return text, counts

        def repl(m: re.Match[str]) -> str:
            term = self.canonical[_key(m.group(0))]
            counts[term] += 1
            return match_case(m.group(0), term)

        pattern = self.pattern
        out = "".join(
            piece if protected else pattern.sub(repl, piece) for piece, protected in split_protected(text)
        )
        return out, counts


def _key(variant: str) -> str:
    return " ".join(re.split(r"[\s-]+", variant.strip().lower()))


def match_case(source: str, term: str) -> str:
    """`term` in the case pattern of `source`: UPPER, Title (first letter) or as written."""
    letters = [c for c in source if c.isalpha()]
    if len(letters) > 1 and all(c.isupper() for c in letters):
        return term.upper()
    if letters and letters[0].isupper():
        return term[:1].upper() + term[1:]
    return term
