"""The template engine: builds conversations for every category from the spec alone, with no model.

    engine = TemplateEngine(spec)
    scene = engine.draw("personas", random.Random(7))   # a Scene, or None when the spec has nothing for it

Deterministic: everything random comes from the `rng` passed in, so a seed reproduces a scene. Variety
comes from the spec (intents, phrasings, slots, personas, glossary synonyms) multiplied by the engine's
phrasing frames and persona/tone transforms below. `build.py` turns scenes into Conversations.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chattune.scenarios.spec import Intent, Persona, ScenarioSpec

SLOT = re.compile(r"\{(\w+)\}")


@dataclass
class Scene:
    """User/assistant turns plus what they exercise; build.py adds the system prompt and sign-off."""

    turns: list[tuple[str, str]]
    meta: dict[str, Any] = field(default_factory=dict)
    facts: list[str] = field(default_factory=list)  # fact ids the final reply relies on
    must_not_contain: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------
# Text helpers


def fill(text: str, values: dict[str, str]) -> str:
    """Replace {slot} placeholders; unknown ones stay as written so a spec typo is visible in the output."""
    return SLOT.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def lower_first(text: str) -> str:
    """Lower-case the first letter unless the first word is 'I' or an acronym/model name (K2, EU)."""
    first = text.split(" ", 1)[0]
    if first in ("I", "I'm", "I've", "I'd", "I'll") or (
        len(first) > 1 and (first[1].isupper() or first[1].isdigit())
    ):
        return text
    return text[:1].lower() + text[1:]


def upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def strip_end(text: str) -> str:
    return text.rstrip(" ?.!")


CONTRACTIONS = {
    "do not": "don't",
    "does not": "doesn't",
    "did not": "didn't",
    "is not": "isn't",
    "are not": "aren't",
    "cannot": "can't",
    "can not": "can't",
    "will not": "won't",
    "would not": "wouldn't",
    "I am": "I'm",
    "I have": "I've",
    "I would": "I'd",
    "it is": "it's",
    "what is": "what's",
    "that is": "that's",
    "there is": "there's",
}
EXPANSIONS = {v: k for k, v in CONTRACTIONS.items()} | {"can't": "cannot"}


def _replace_phrases(text: str, table: dict[str, str]) -> str:
    def swap(m: re.Match[str]) -> str:
        found = m.group(0)
        repl = table[next(k for k in table if k.lower() == found.lower())]
        return upper_first(repl) if found[:1].isupper() else repl

    pattern = r"\b(" + "|".join(re.escape(k) for k in sorted(table, key=len, reverse=True)) + r")\b"
    return re.sub(pattern, swap, text, flags=re.IGNORECASE)


def contract(text: str) -> str:
    return _replace_phrases(text, CONTRACTIONS)


def expand(text: str) -> str:
    return _replace_phrases(text, EXPANSIONS)


# Direct question -> embedded form ("How do I pair it?" -> "how to pair it"), for frames like
# "Could you tell me {embedded}?". Questions no rule fits keep only the direct-question frames.
_EMBED_RULES: list[tuple[str, str]] = [
    (r"^how do i (.+)$", r"how to \1"),
    (r"^how can i (.+)$", r"how I can \1"),
    (r"^how should i (.+)$", r"how I should \1"),
    (r"^what is (.+)$", r"what \1 is"),
    (r"^what's (.+)$", r"what \1 is"),
    (r"^what are (.+)$", r"what \1 are"),
    (r"^(?:can|could) i (.+)$", r"whether I can \1"),
    (r"^do you (.+)$", r"whether you \1"),
    (r"^is there (.+)$", r"whether there is \1"),
    (r"^where (?:can|do) i (.+)$", r"where I can \1"),
    (r"^which (.+)$", r"which \1"),
]


def embed_question(question: str) -> str | None:
    q = strip_end(question.strip())
    for pattern, repl in _EMBED_RULES:
        if re.match(pattern, q, flags=re.IGNORECASE):
            return re.sub(pattern, repl, q, count=1, flags=re.IGNORECASE)
    return None


DIRECT_FRAMES = [
    "{q}",
    "Quick question: {q}",
    "Hi! {q}",
    "Hello, {lq}",
    "I have a question. {q}",
    "{q} Thanks!",
]
EMBEDDED_FRAMES = [
    "Could you tell me {e}?",
    "I'd like to know {e}.",
    "Do you know {e}?",
    "Can you explain {e}?",
    "I'm trying to find out {e}.",
    "Any idea {e}?",
    "Please tell me {e}.",
]
NUANCED_CONTEXTS = [
    "I've read through the documentation but I'm still not entirely sure, so",
    "Before I go ahead and change anything,",
    "I'd rather double-check than guess, so",
    "This may well be covered somewhere already, but",
    "Having tried to work this out on my own without much luck,",
]
NUANCED_ASKS = [
    "could you explain {e}?",
    "I'd appreciate it if you could clarify {e}.",
    "I'm hoping you can tell me {e}, and whether there's a catch I'm missing.",
    "would you mind walking me through {e}?",
]


# ----------------------------------------------------------------------------------------------------
# Persona / tone transforms: (text, rng) -> text. Each keeps the request's content words.

_FILLERS = r"\b(can you (please )?(tell me )?|could you (please )?(tell me )?|please|i would like to know|i want to know|i was wondering|do you know)\b"


def _join(opener: str, text: str) -> str:
    """'Hello,' + 'What is...' -> 'Hello, what is...'; 'Ugh.' + 'What is...' keeps the capital."""
    return f"{opener} {lower_first(text) if opener.endswith(',') else text}".strip()


def _formal(text: str, rng: random.Random) -> str:
    opener = rng.choice(["Good afternoon.", "Hello,", "Dear support team,", "Good morning."])
    closer = rng.choice(
        ["Thank you in advance.", "Kind regards.", "I would be grateful for your assistance."]
    )
    return f"{_join(opener, upper_first(expand(text)))} {closer}"


def _casual(text: str, rng: random.Random) -> str:
    opener = rng.choice(["hey,", "hi there,", "yo,", "quick q:", "hiya,"])
    closer = rng.choice(["thx", "cheers", ":)", "", "ty!"])
    body = lower_first(contract(text))
    if rng.random() < 0.5:
        body = strip_end(body)
    return f"{opener} {body} {closer}".strip()


def _terse(text: str, rng: random.Random) -> str:
    body = re.sub(_FILLERS, "", text, flags=re.IGNORECASE)
    body = re.sub(r"\b(the|a|an|my)\b ", "", body, flags=re.IGNORECASE)
    body = strip_end(re.sub(r"\s+", " ", body).strip(" ,"))
    return lower_first(body) + rng.choice(["", "?"])


def _frustrated(text: str, rng: random.Random) -> str:
    opener = rng.choice(
        [
            "This is the second time I'm asking.",
            "I'm getting really annoyed.",
            "Seriously,",
            "Ugh.",
            "Nothing works!",
        ]
    )
    closer = rng.choice(
        ["This is ridiculous.", "Please just fix it!", "I need this sorted today.", "Why is this so hard?"]
    )
    return f"{_join(opener, text)} {closer}"


def _non_native(text: str, rng: random.Random) -> str:
    body = re.sub(r"^How do I ", "How I can ", text, flags=re.IGNORECASE)
    body = re.sub(r"^What is ", "What is the ", body)
    body = re.sub(r"\b(the|a|an) ", lambda m: "" if rng.random() < 0.7 else m.group(0), body)
    opener = rng.choice(["Hello sir,", "Hello,", "Good day,", ""])
    closer = rng.choice(["Please help.", "Thank you very much for help.", "Thanks you.", "Please answer."])
    return f"{_join(opener, body)} {closer}".strip()


def _novice(text: str, rng: random.Random) -> str:
    opener = rng.choice(
        [
            "Sorry if this is a silly question, I'm not good with gadgets.",
            "I'm new to all this technology.",
            "I've never used anything like this before.",
        ]
    )
    closer = rng.choice(["Step by step please!", "Thanks for your patience.", "Please keep it simple."])
    return f"{opener} {text} {closer}"


def _expert(text: str, rng: random.Random) -> str:
    opener = rng.choice(
        [
            "Quick one:",
            "Technical question:",
            "I've already checked the obvious things.",
            "FYI, power user here.",
        ]
    )
    closer = rng.choice(["Skip the basics please.", "Details appreciated.", ""])
    return f"{opener} {contract(text)} {closer}".strip()


STYLES: dict[str, Callable[[str, random.Random], str]] = {
    "formal": _formal,
    "casual": _casual,
    "terse": _terse,
    "frustrated": _frustrated,
    "non_native": _non_native,
    "novice": _novice,
    "expert": _expert,
}
STYLE_REPLY_OPENERS: dict[str, list[str]] = {
    "formal": ["Thank you for your message.", "Certainly."],
    "casual": ["Sure thing!", "No worries!"],
    "terse": [""],
    "frustrated": [
        "I'm sorry about the trouble, let's get this sorted.",
        "Sorry for the frustration. Here's what to do.",
    ],
    "non_native": ["Of course, happy to help.", "Yes, I can help."],
    "novice": ["No problem at all, it's easy.", "Happy to walk you through it."],
    "expert": ["Short version:", ""],
}


def apply_persona(persona: Persona, text: str, rng: random.Random) -> str:
    out = STYLES[persona.style](text, rng)
    if persona.openers and rng.random() < 0.5:
        out = f"{rng.choice(persona.openers)} {out}"
    return re.sub(r"\s+", " ", out).strip()


def persona_reply(persona: Persona, answer: str, rng: random.Random) -> str:
    opener = rng.choice(persona.reply_openers or STYLE_REPLY_OPENERS[persona.style])
    return f"{opener} {answer}".strip()


# ----------------------------------------------------------------------------------------------------
# The engine


class TemplateEngine:
    """One `draw_<category>` per category; each returns a Scene or None if the spec has no material for it."""

    def __init__(self, spec: ScenarioSpec):
        self.spec = spec
        self.followable = [i for i in spec.intents if i.follow_ups]

    def draw(self, category: str, rng: random.Random) -> Scene | None:
        draw: Callable[[random.Random], Scene | None] = getattr(self, f"draw_{category}")
        scene = draw(rng)
        if scene is not None:
            scene.meta.setdefault("expected_behavior", "answer")
        return scene

    # -- building blocks ---------------------------------------------------------------------------

    def slots(
        self, intent: Intent, rng: random.Random, fixed: dict[str, str] | None = None
    ) -> dict[str, str]:
        """Slot values for one conversation: a case row (agreeing with `fixed`) plus independent slots."""
        fixed = fixed or {}
        values = {name: rng.choice(options) for name, options in intent.slots.items() if options}
        rows = [row for row in intent.cases if all(row.get(k, v) == v for k, v in fixed.items())]
        if rows:
            values |= rng.choice(rows)
        return values | fixed

    def ask(self, intent: Intent, rng: random.Random, values: dict[str, str]) -> str:
        return fill(rng.choice(intent.examples), values)

    def answer(self, intent: Intent, values: dict[str, str]) -> str:
        if intent.answer:
            return fill(intent.answer, values)
        return (
            " ".join(self.spec.fact(f).text for f in intent.facts)
            or f"Here is what I know about {intent.label}."
        )

    def synonym_swap(self, text: str, rng: random.Random) -> str:
        """Say glossary terms another way. One pass over all forms, longest first, so a longer term
        ('Kettlebyte Home') is swapped as a whole before a shorter one inside it ('Kettlebyte')."""
        forms = sorted(
            ((f, t) for t in self.spec.glossary for f in [t.term, *t.synonyms]), key=lambda ft: -len(ft[0])
        )
        if not forms:
            return text
        term_of = {f.lower(): t for f, t in forms}
        pattern = re.compile(r"\b(" + "|".join(re.escape(f) for f, _ in forms) + r")\b", re.IGNORECASE)

        def swap(m: re.Match[str]) -> str:
            term = term_of[m.group(0).lower()]
            choice = rng.choice([term.term, *term.synonyms])
            return upper_first(choice) if m.start() == 0 else choice

        return pattern.sub(swap, text)

    def frame(self, question: str, rng: random.Random) -> str:
        embedded = embed_question(question)
        frames = DIRECT_FRAMES + (EMBEDDED_FRAMES if embedded else [])
        return rng.choice(frames).format(q=question, lq=lower_first(question), e=embedded)

    def intent_turn(self, intent: Intent, rng: random.Random) -> tuple[str, str]:
        values = self.slots(intent, rng)
        return self.ask(intent, rng, values), self.answer(intent, values)

    def pick_persona(self, rng: random.Random) -> Persona | None:
        return rng.choice(self.spec.personas) if self.spec.personas else None

    # -- the eight categories ----------------------------------------------------------------------

    def draw_edge_cases(self, rng: random.Random) -> Scene | None:
        items: list[tuple[str, str, str, str]] = [
            (e.user, e.reply, e.behavior, "edge_case") for e in self.spec.edge_cases
        ]
        items += [(ex, r.reply, "decline", r.topic) for r in self.spec.out_of_scope for ex in r.examples]
        if not items:
            return None
        user, reply, behavior, topic = rng.choice(items)
        if rng.random() < 0.5:
            user = rng.choice(DIRECT_FRAMES).format(q=user, lq=lower_first(user))
        return Scene([(user, reply)], {"expected_behavior": behavior, "topic": topic})

    def draw_multi_turn(self, rng: random.Random) -> Scene | None:
        if not self.followable:
            return None
        first = rng.choice(self.followable)
        follow = rng.choice(first.follow_ups)
        turns = [self.intent_turn(first, rng)]
        intents = [first.name]
        others = [i for i in self.spec.intents if i.name != first.name]
        if others and rng.random() < 0.5:  # a turn in between, so the back-reference has to reach further
            other = rng.choice(others)
            turns.append(self.intent_turn(other, rng))
            intents.append(other.name)
            back = rng.choice(
                [
                    "Remember when I asked about {t}? {f}",
                    "Going back to what I asked about {t} earlier: {lf}",
                    "Earlier you told me about {t}. {f}",
                    "About {t} from before: {lf}",
                ]
            )
            user = back.format(t=first.label, f=follow.user, lf=lower_first(follow.user))
            reply = f"Sure, back to {first.label}: {lower_first(follow.answer)}"
        else:
            user, reply = follow.user, follow.answer
        turns.append((user, reply))
        return Scene(
            turns,
            {"intent": first.name, "intents": [*intents, first.name]},
            facts=follow.facts or first.facts,
        )

    def draw_negative(self, rng: random.Random) -> Scene | None:
        if not self.spec.false_premises:
            return None
        fp = rng.choice(self.spec.false_premises)
        user = fp.user
        persona = self.pick_persona(rng)
        meta: dict[str, Any] = {"expected_behavior": "correct"}
        if persona is not None and rng.random() < 0.5:
            user = apply_persona(persona, user, rng)
            meta["persona"] = persona.name
        return Scene([(user, fp.reply)], meta, facts=fp.facts, must_not_contain=fp.must_not_contain)

    def draw_personas(self, rng: random.Random) -> Scene | None:
        persona = self.pick_persona(rng)
        if persona is None:
            return None
        intent = rng.choice(self.spec.intents)
        question, answer = self.intent_turn(intent, rng)
        turns = [(apply_persona(persona, question, rng), persona_reply(persona, answer, rng))]
        return Scene(
            turns,
            {"intent": intent.name, "persona": persona.name, "style": persona.style},
            facts=intent.facts,
        )

    def draw_language_complexity(self, rng: random.Random) -> Scene | None:
        intent = rng.choice(self.spec.intents)
        values = self.slots(intent, rng)
        if rng.random() < 0.5:
            # plain: the shortest phrasings, said directly
            shortest = sorted(intent.examples, key=len)[: max(1, len(intent.examples) // 2)]
            user, complexity = fill(rng.choice(shortest), values), "plain"
        else:
            complexity = "nuanced"
            question = fill(rng.choice(intent.examples), values)
            embedded = embed_question(question)
            if intent.nuanced_examples and (embedded is None or rng.random() < 0.5):
                user = fill(rng.choice(intent.nuanced_examples), values)
            elif embedded is not None:
                user = f"{rng.choice(NUANCED_CONTEXTS)} {rng.choice(NUANCED_ASKS).format(e=embedded)}"
            else:
                user = f"{rng.choice(NUANCED_CONTEXTS)} {lower_first(question)}"
        return Scene(
            [(user, self.answer(intent, values))],
            {"intent": intent.name, "complexity": complexity},
            facts=intent.facts,
        )

    def draw_ambiguity(self, rng: random.Random) -> Scene | None:
        if not self.spec.ambiguous:
            return None
        amb = rng.choice(self.spec.ambiguous)
        user, meta = amb.user, {"expected_behavior": "clarify"}
        persona = self.pick_persona(rng)
        if persona is not None and rng.random() < 0.5:
            user = apply_persona(persona, user, rng)
            meta["persona"] = persona.name
        turns = [(user, amb.clarify)]
        facts: list[str] = []
        if amb.resolutions and rng.random() < 0.5:  # the user answers the question; the reply resolves it
            res = rng.choice(amb.resolutions)
            intent = self.spec.intent(res.intent)
            turns.append((res.user, self.answer(intent, self.slots(intent, rng, res.values))))
            meta |= {"expected_behavior": "answer", "intent": intent.name}
            facts = intent.facts
        return Scene(turns, meta, facts=facts)

    def draw_interleaved_intents(self, rng: random.Random) -> Scene | None:
        if not self.followable or len(self.spec.intents) < 2:
            return None
        first = rng.choice(self.followable)
        others = [i for i in self.spec.intents if i.name != first.name]
        middle = rng.sample(others, k=min(len(others), rng.choice([1, 1, 2])))
        turns = [self.intent_turn(first, rng)]
        for other in middle:
            q, a = self.intent_turn(other, rng)
            switch = rng.choice(
                [
                    "Also, different question: {lq}",
                    "Unrelated, but {lq}",
                    "One more thing. {q}",
                    "Another thing: {lq}",
                ]
            )
            turns.append((switch.format(q=q, lq=lower_first(q)), a))
        follow = rng.choice(first.follow_ups)
        back = rng.choice(["Back to {t}: {lf}", "OK, and about {t} again: {lf}", "Coming back to {t}. {f}"])
        turns.append((back.format(t=first.label, f=follow.user, lf=lower_first(follow.user)), follow.answer))
        intents = [first.name, *(m.name for m in middle), first.name]
        return Scene(turns, {"intent": first.name, "intents": intents}, facts=follow.facts or first.facts)

    def draw_synonymous(self, rng: random.Random) -> Scene | None:
        intent = rng.choice(self.spec.intents)
        values = self.slots(intent, rng)
        question = self.synonym_swap(self.ask(intent, rng, values), rng)
        user = self.frame(question, rng)
        return Scene(
            [(user, self.answer(intent, values))],
            {"intent": intent.name, "paraphrase_set": intent.name},
            facts=intent.facts,
        )
