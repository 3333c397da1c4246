"""Text operations that vary how a user says something without changing what they ask.

Each operation is `op(text, rng, word_rate, char_rate) -> text`, pure apart from `rng`, so a seed
reproduces its output. Written by hand rather than taken from nlpaug/textattack: those draw from the
global random state (no per-call seed), and their synonym and spelling sources need downloads; the
lexicons here ship with chattune (synonyms.json, spelling.json, written for support-style English).
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

from chattune.scenarios.engine import contract, embed_question, expand, lower_first, strip_end, upper_first

Op = Callable[[str, random.Random, float, float], str]
HERE = Path(__file__).parent
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*")

# Neighbouring keys on a QWERTY keyboard (letters only; a typo never turns a letter into a symbol).
_ROWS = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
KEYBOARD: dict[str, str] = {}
for r, row in enumerate(_ROWS):
    for c, ch in enumerate(row):
        near = [row[i] for i in (c - 1, c + 1) if 0 <= i < len(row)]
        for rr in (r - 1, r + 1):
            if 0 <= rr < len(_ROWS):
                near += [_ROWS[rr][i] for i in (c - 1, c, c + 1) if 0 <= i < len(_ROWS[rr])]
        KEYBOARD[ch] = "".join(near)


@functools.cache
def synonym_table() -> dict[str, list[str]]:
    """word or phrase (lower case) -> its alternatives, from the groups in synonyms.json."""
    table: dict[str, list[str]] = {}
    for group in json.loads((HERE / "synonyms.json").read_text(encoding="utf-8"))["groups"]:
        for word in group:
            table.setdefault(word, [])
            table[word] += [w for w in group if w != word and w not in table[word]]
    return table


@functools.cache
def spelling_table() -> dict[str, list[str]]:
    data = json.loads((HERE / "spelling.json").read_text(encoding="utf-8"))
    table: dict[str, list[str]] = {}
    for us, uk in data["us_uk"].items():  # both directions: a US writer becomes British and back
        table.setdefault(us, []).append(uk)
        table.setdefault(uk, []).append(us)
    for right, wrong in data["misspellings"].items():
        table.setdefault(right, []).append(wrong)
    return table


@functools.cache
def _phrase_pattern(keys: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(
        r"\b(" + "|".join(re.escape(k) for k in sorted(keys, key=len, reverse=True)) + r")\b", re.IGNORECASE
    )


def _match_case(source: str, repl: str) -> str:
    if source.isupper() and len(source) > 1:
        return repl.upper()
    return upper_first(repl) if source[:1].isupper() else repl


def _replace_some(text: str, table: dict[str, list[str]], rng: random.Random, rate: float) -> str:
    """Replace about `rate` of the table's words/phrases found in text (at least one), keeping case.
    Capitalised words inside a sentence are names (Kettlebyte Home) and are left alone."""
    matches = [
        m
        for m in _phrase_pattern(tuple(table)).finditer(text)
        if m.start() == 0 or not m.group(0)[:1].isupper()
    ]
    if not matches:
        return text
    chosen = {m.start() for m in rng.sample(matches, k=max(1, round(rate * len(matches))))}
    out, last = [], 0
    for m in matches:
        if m.start() in chosen:
            out += [text[last : m.start()], _match_case(m.group(0), rng.choice(table[m.group(0).lower()]))]
            last = m.end()
    return "".join(out) + text[last:]


def _char_positions(text: str, rng: random.Random, rate: float, *, inner: bool = False) -> list[int]:
    """Positions of letters to edit: about rate x letters, at least one; `inner` skips first letters."""
    cands = [
        i
        for i, ch in enumerate(text)
        if ch.isalpha() and not (inner and (i == 0 or not text[i - 1].isalpha()))
    ]
    if not cands:
        return []
    return sorted(rng.sample(cands, k=min(len(cands), max(1, round(rate * len(cands))))), reverse=True)


# ----------------------------------------------------------------------------------------------------
# The operations


def keyboard_typo(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    chars = list(text)
    for i in _char_positions(text, rng, char_rate):
        near = KEYBOARD.get(chars[i].lower())
        if near:
            hit = rng.choice(near)
            chars[i] = hit.upper() if chars[i].isupper() else hit
    return "".join(chars)


def letters(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    """Drop, double, or swap with the next letter (never a word's first letter, so words stay recognisable)."""
    chars = list(text)
    for i in _char_positions(text, rng, char_rate, inner=True):
        kind = rng.choice(["drop", "double", "swap"])
        if kind == "swap" and not (
            i + 1 < len(chars) and chars[i + 1].isalpha() and chars[i + 1] != chars[i]
        ):
            kind = "double"  # a swap there would change nothing
        if kind == "drop":
            del chars[i]
        elif kind == "double":
            chars.insert(i, chars[i])
        else:
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def spelling(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    return _replace_some(text, spelling_table(), rng, word_rate)


def synonyms(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    return _replace_some(text, synonym_table(), rng, word_rate)


def casing(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    kind = rng.choices(["lower", "no_capital", "upper", "title"], weights=[4, 3, 1, 1])[0]
    if kind == "lower":
        return text.lower()
    if kind == "no_capital":
        return text[:1].lower() + text[1:]
    if kind == "upper":
        return text.upper()
    return re.sub(r"\b[a-z]", lambda m: m.group(0).upper(), text)


def punctuation(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    kind = rng.choice(["drop_end", "repeat_end", "drop_commas", "drop_apostrophes", "ellipsis"])
    if kind == "drop_end":
        return text.rstrip(".?!")
    if kind == "repeat_end":
        return (
            re.sub(r"([?!.])$", lambda m: m.group(1) * rng.randint(2, 3), text)
            if text[-1:] in "?!."
            else text + "!!"
        )
    if kind == "drop_commas":
        return text.replace(",", "")
    if kind == "drop_apostrophes":
        return re.sub(r"(\w)'(\w)", r"\1\2", text)
    return text.rstrip(".?!") + "..."


def contractions(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    contracted = contract(text)
    return contracted if contracted != text else expand(text)


_QUESTION_FORMS: list[tuple[str, list[str]]] = [
    (
        r"^how do i (.+?)\?*$",
        ["How can I {0}?", "How to {0}?", "What's the way to {0}?", "Can you tell me how to {0}?"],
    ),
    (r"^how can i (.+?)\?*$", ["How do I {0}?", "How to {0}?", "Is there a way to {0}?"]),
    (r"^(?:can|could) i (.+?)\?*$", ["Is it possible to {0}?", "Am I able to {0}?", "Could I {0}?"]),
    (r"^is it possible to (.+?)\?*$", ["Can I {0}?", "Could I {0}?"]),
    (r"^what is (.+?)\?*$", ["Tell me what {0} is.", "What exactly is {0}?"]),
    (r"^i want to (.+?)[.!]*$", ["Can I {0}?", "I'd like to {0}.", "How do I {0}?"]),
    (r"^i need (.+?)[.!]*$", ["Could I get {0}?", "I'm looking for {0}."]),
]


def structure(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    """Question forms and word order, on the last sentence (where the request usually is)."""
    head, last = _split_last_sentence(text)
    for pattern, forms in _QUESTION_FORMS:
        m = re.match(pattern, last, flags=re.IGNORECASE)
        if m:
            return head + rng.choice(forms).format(m.group(1))
    embedded = embed_question(last) if last.endswith("?") else None
    if embedded and rng.random() < 0.6:
        return head + rng.choice(
            ["Could you tell me {e}?", "I'd like to know {e}.", "Do you know {e}?"]
        ).format(e=embedded)
    m = re.match(r"^(when|if|after|before) ([^,]+), (.+?)([?.!]*)$", last, flags=re.IGNORECASE)
    if m:  # "When X, Y?" -> "Y when X?"
        return head + f"{upper_first(m.group(3))} {m.group(1).lower()} {lower_first(m.group(2))}{m.group(4)}"
    if re.search(r"\bplease\b", last, flags=re.IGNORECASE):  # move 'please' to the other end
        body = re.sub(r",?\s*\bplease\b,?\s*", " ", last, flags=re.IGNORECASE).strip()
        end = body[-1] if body[-1:] in "?.!" else ""
        return head + (
            f"Please {lower_first(body)}"
            if not last.lower().startswith("please")
            else f"{strip_end(upper_first(body))}, please{end}"
        )
    return text


def _split_last_sentence(text: str) -> tuple[str, str]:
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text.strip())
    head = " ".join(parts[:-1])
    return (head + " " if head else ""), parts[-1]


FILLERS = ["really", "just", "actually", "basically", "kind of", "um", "honestly"]


def random_insert(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    """EDA-style insertion: a synonym of a word in the text (or a filler word) at a random position."""
    words = text.split(" ")
    table = synonym_table()
    for _ in range(max(1, round(word_rate * len(words)))):
        known = [w for w in (re.sub(r"\W", "", w).lower() for w in words) if w in table]
        extra = rng.choice(table[rng.choice(known)]) if known and rng.random() < 0.5 else rng.choice(FILLERS)
        words.insert(rng.randint(1, len(words)) if len(words) > 1 else 1, extra)
    return " ".join(words)


def random_delete(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    words = text.split(" ")
    if len(words) < 4:  # too short to lose a word and keep the meaning
        return text
    drop = set(rng.sample(range(len(words)), k=max(1, round(word_rate * len(words)))))
    return " ".join(w for i, w in enumerate(words) if i not in drop or not WORD.fullmatch(w))


def random_swap(text: str, rng: random.Random, word_rate: float, char_rate: float) -> str:
    words = text.split(" ")
    idx = [i for i, w in enumerate(words) if WORD.fullmatch(w)]
    if len(idx) < 2:
        return text
    for _ in range(max(1, round(word_rate * len(words) / 2))):
        a, b = rng.sample(idx, 2)
        words[a], words[b] = words[b], words[a]
    return " ".join(words)


# Application order: whole-turn rewrites first, then word-level edits, then surface noise (casing,
# punctuation, typos), so a typo is never "repaired" by a later synonym lookup.
OPS: dict[str, Op] = {
    "structure": structure,
    "contractions": contractions,
    "synonyms": synonyms,
    "spelling": spelling,
    "random_insert": random_insert,
    "random_delete": random_delete,
    "random_swap": random_swap,
    "casing": casing,
    "punctuation": punctuation,
    "keyboard_typo": keyboard_typo,
    "letters": letters,
}
