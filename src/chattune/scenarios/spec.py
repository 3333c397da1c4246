"""The scenario spec: a short YAML description of an assistant's domain that scenarios are built from.

    spec = load_spec("examples/scenarios.yaml", ["generate.per_category=20"])

Validated with `chattune.config.load_config`, so a misspelt key fails with the closest valid name and
every problem is reported at once. Phrasings and answers may hold `{slot}` placeholders, filled from
the intent's `slots` (the same value in the user turn and the answer). See examples/scenarios.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from chattune.config import Section, TeacherConfig, load_config

Category = Literal[
    "edge_cases",
    "multi_turn",
    "negative",
    "personas",
    "language_complexity",
    "ambiguity",
    "interleaved_intents",
    "synonymous",
]
# The eight behaviours a build covers, as written in meta.category (and in the eval suite).
CATEGORIES: tuple[Category, ...] = (
    "edge_cases",  # unconventional or nonsensical requests, answered playfully or redirected
    "multi_turn",  # later turns refer back to earlier ones
    "negative",  # false premises, wrong information, impossible requests: polite correction
    "personas",  # formal, casual, terse, frustrated, non-native, novice, expert users
    "language_complexity",  # plain and nuanced phrasings of the same need
    "ambiguity",  # underspecified requests answered with a clarifying question
    "interleaved_intents",  # a conversation that switches between tasks and back
    "synonymous",  # paraphrase sets for one intent
)
DOCUMENT_CATEGORY = "document_qa"  # grounded Q&A from documents (an extra, optional category)
Style = Literal["formal", "casual", "terse", "frustrated", "non_native", "novice", "expert"]
Behavior = Literal["answer", "clarify", "decline", "correct"]


class AssistantSpec(Section):
    name: str = Field("Assistant", description="The assistant's name.")
    system_prompt: str | None = Field(
        None, description="System message opening every conversation; null: none."
    )
    sign_off: str | None = Field(
        None, description="Line appended to every assistant reply (e.g. '— Kit, Kettlebyte Support')."
    )


class Fact(Section):
    id: str = Field(description="Short name that intents and false premises refer to.")
    text: str = Field(description="The fact, as the assistant may state it.")
    keywords: list[str] = Field(
        default_factory=list,
        description="Strings a correct reply relying on this fact contains (case-insensitive), e.g. '3 seconds'. "
        "Teacher replies are checked against them; the eval suite's rubric requires them.",
    )


class FollowUp(Section):
    user: str = Field(
        description="A later user turn that only makes sense after the intent's first answer ('how long does that take?')."
    )
    answer: str = Field(description="The reply, using the earlier context.")
    facts: list[str] = Field(default_factory=list, description="Fact ids the answer relies on.")


class Intent(Section):
    name: str = Field(description="Identifier written to meta.intent.")
    description: str = Field(description="What the user wants, in a sentence (also the teacher's brief).")
    topic: str | None = Field(
        None, description="Short noun phrase for back-references ('descaling'); default: the name."
    )
    examples: list[str] = Field(min_length=1, description="User phrasings; may hold {slot} placeholders.")
    nuanced_examples: list[str] = Field(
        default_factory=list, description="Longer, more nuanced phrasings of the same need."
    )
    answer: str | None = Field(None, description="Reference answer (may hold the same {slot} placeholders).")
    facts: list[str] = Field(default_factory=list, description="Fact ids the answer relies on.")
    slots: dict[str, list[str]] = Field(
        default_factory=dict, description="Values per {slot} placeholder, chosen independently."
    )
    cases: list[dict[str, str]] = Field(
        default_factory=list,
        description="Rows of slot values that belong together (e.g. tea: green tea, temperature: 80 °C); one row per conversation.",
    )
    follow_ups: list[FollowUp] = Field(
        default_factory=list, description="Context-dependent next turns (multi-turn scenarios)."
    )

    @property
    def label(self) -> str:
        return self.topic or self.name.replace("_", " ")


class Persona(Section):
    name: str = Field(description="Identifier written to meta.persona.")
    style: Style = Field(description="Built-in transform applied to the user's words.")
    description: str = Field("", description="Who this user is (also the teacher's brief).")
    openers: list[str] = Field(
        default_factory=list, description="Extra lines this user starts with (added to the style's own)."
    )
    reply_openers: list[str] = Field(
        default_factory=list, description="Lines the assistant may open its reply with for this user."
    )


class GlossaryTerm(Section):
    term: str = Field(description="A word or phrase users say.")
    meaning: str = Field("", description="What it means here.")
    synonyms: list[str] = Field(
        default_factory=list, description="Other ways users say it (used for paraphrase sets)."
    )


class Redirect(Section):
    topic: str = Field(description="An out-of-scope topic.")
    examples: list[str] = Field(min_length=1, description="Requests about it.")
    reply: str = Field(description="The graceful redirect.")


class EdgeCase(Section):
    user: str = Field(description="An unconventional or nonsensical request.")
    reply: str = Field(description="A playful answer or a graceful redirect.")
    behavior: Behavior = Field("decline", description="Expected behaviour, for the eval suite.")


class FalsePremise(Section):
    user: str = Field(
        description="A request built on a false premise, wrong information or an impossible wish."
    )
    reply: str = Field(description="A polite correction plus a clarifying question or related suggestion.")
    facts: list[str] = Field(default_factory=list, description="Fact ids the correction relies on.")
    must_not_contain: list[str] = Field(
        default_factory=list, description="Strings a correct reply never says (eval rubric)."
    )


class Resolution(Section):
    user: str = Field(description="The user's answer to the clarifying question.")
    intent: str = Field(description="The intent it resolves to; its answer becomes the final reply.")
    values: dict[str, str] = Field(
        default_factory=dict, description="Slot values the user's answer fixes (e.g. product: Mini)."
    )


class Ambiguous(Section):
    user: str = Field(description="An underspecified request.")
    clarify: str = Field(description="The clarifying question the assistant asks.")
    resolutions: list[Resolution] = Field(
        default_factory=list, description="Ways the user may answer, each naming an intent."
    )


class GenerateSpec(Section):
    seed: int = Field(0, description="Seeds every choice; the same spec and seed give the same files.")
    per_category: int = Field(
        30, ge=1, description="Training conversations to aim for per category (template engine)."
    )
    eval_per_category: int = Field(
        5, ge=0, description="Held-out eval prompts per category (never in the training file)."
    )
    categories: list[Category] = Field(
        default_factory=lambda: list(CATEGORIES), description="Categories to build."
    )
    thin_fraction: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Warn when a category has fewer than this share of per_category conversations.",
    )
    near_duplicate_threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity (word 3-grams of user turns) above which two conversations are near-duplicates.",
    )
    output_dir: Path = Field(
        Path("scenarios"), description="Where conversations, eval suite and coverage report go."
    )


class ModelGeneratorSpec(Section):
    enabled: bool = Field(False, description="Draft extra user phrasings and replies with the teacher model.")
    per_intent: int = Field(2, ge=1, description="Teacher-drafted conversations per intent.")
    max_attempts: int = Field(
        3,
        ge=1,
        description="Drafts per reply before giving up when it fails the fact check (or, for documents, the grounding check).",
    )


class DocumentsSpec(Section):
    files: list[Path] = Field(
        default_factory=list, description="Plain-text or Markdown documents to turn into grounded Q&A."
    )
    per_passage: int = Field(1, ge=1, description="Questions per passage.")
    max_passages: int | None = Field(
        None, ge=1, description="Use at most this many passages (in document order)."
    )
    passage_chars: int = Field(
        800, ge=100, description="Largest passage, in characters; longer sections are split at paragraphs."
    )
    min_grounding: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of an answer's content words that must occur in its passage; below, the answer is rejected.",
    )


class ScenarioSpec(Section):
    domain: str = Field(description="What the assistant is for, in a paragraph.")
    assistant: AssistantSpec = Field(default_factory=AssistantSpec)
    knowledge: list[Fact] = Field(default_factory=list, description="The facts answers rely on.")
    intents: list[Intent] = Field(min_length=1, description="What users ask for.")
    personas: list[Persona] = Field(default_factory=list, description="Kinds of users and their tone.")
    glossary: list[GlossaryTerm] = Field(default_factory=list)
    out_of_scope: list[Redirect] = Field(
        default_factory=list, description="Topics to redirect politely (edge cases)."
    )
    edge_cases: list[EdgeCase] = Field(default_factory=list)
    false_premises: list[FalsePremise] = Field(
        default_factory=list, description="False premises and impossible requests (negative)."
    )
    ambiguous: list[Ambiguous] = Field(
        default_factory=list, description="Underspecified requests (ambiguity)."
    )
    generate: GenerateSpec = Field(default_factory=GenerateSpec)
    teacher: TeacherConfig = Field(
        default_factory=TeacherConfig, description="The model the model-backed generators use."
    )
    model_generator: ModelGeneratorSpec = Field(default_factory=ModelGeneratorSpec)
    documents: DocumentsSpec = Field(default_factory=DocumentsSpec)

    @model_validator(mode="after")
    def _references_exist(self) -> ScenarioSpec:
        problems = []
        fact_ids = {f.id for f in self.knowledge}
        intent_names = [i.name for i in self.intents]
        for name in {n for n in intent_names if intent_names.count(n) > 1}:
            problems.append(f"intent name {name!r} is used twice")
        refs = [(f"intents[{i}]", it.facts) for i, it in enumerate(self.intents)]
        refs += [
            (f"intents[{i}].follow_ups[{j}]", fu.facts)
            for i, it in enumerate(self.intents)
            for j, fu in enumerate(it.follow_ups)
        ]
        refs += [(f"false_premises[{i}]", fp.facts) for i, fp in enumerate(self.false_premises)]
        for where, ids in refs:
            problems += [f"{where}.facts: unknown fact {f!r}" for f in ids if f not in fact_ids]
        for i, it in enumerate(self.intents):
            provided = set(it.slots) | (
                set.intersection(*(set(row) for row in it.cases)) if it.cases else set()
            )
            used = {
                m
                for text in [*it.examples, *it.nuanced_examples, it.answer or ""]
                for m in re.findall(r"\{(\w+)\}", text)
            }
            problems += [
                f"intents[{i}]: placeholder {{{s}}} has no values in slots or in every row of cases"
                for s in sorted(used - provided)
            ]
        for i, amb in enumerate(self.ambiguous):
            problems += [
                f"ambiguous[{i}].resolutions[{j}].intent: unknown intent {r.intent!r}"
                for j, r in enumerate(amb.resolutions)
                if r.intent not in intent_names
            ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def fact(self, fact_id: str) -> Fact:
        return next(f for f in self.knowledge if f.id == fact_id)

    def intent(self, name: str) -> Intent:
        return next(i for i in self.intents if i.name == name)

    def keywords(self, fact_ids: list[str]) -> list[str]:
        """Every keyword of the given facts, in order, without repeats."""
        return list(dict.fromkeys(k for f in fact_ids for k in self.fact(f).keywords))


def load_spec(path: str | Path, overrides: list[str] | None = None) -> ScenarioSpec:
    return load_config(path, overrides, model=ScenarioSpec)
