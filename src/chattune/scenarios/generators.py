"""Model-backed generators: the teacher drafts user phrasings and replies, or grounded Q&A from documents.

    scenes, rejected = teacher_scenes(spec, Teacher(spec.teacher), on_step=progress_callback)
    scenes, rejected = document_scenes(spec, Teacher(spec.teacher))

Teacher output is checked before it is kept: a reply must mention every keyword of the facts its intent
relies on (else it is redrafted, and finally replaced by the spec's reference answer or dropped), and a
document answer must be grounded in its passage (most content words and every number found there).
Every drop is counted and reported by the build; nothing is lost silently.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chattune.errors import DataError
from chattune.scenarios.engine import Scene
from chattune.scenarios.spec import DOCUMENT_CATEGORY, Intent, Persona, ScenarioSpec
from chattune.teacher import Teacher

Step = Callable[[], None]


def derive_seed(*parts: object) -> int:
    """A stable 32-bit seed from a build seed and names (crc32: the same on every machine and run)."""
    return zlib.crc32(":".join(map(str, parts)).encode("utf-8"))


def clean_line(text: str) -> str:
    """First non-empty line of a teacher draft, without quotes or a label ('Message:', 'You could ask: "...').
    Small models like to introduce their answer; the quoted part after a short label is the draft."""
    for line in text.strip().splitlines():
        quoted = re.match(r"^(?:[^:\"“]{1,30}:\s*)?[\"“]([^\"”]+)[\"”]", line.strip())
        line = (quoted.group(1) if quoted else line).strip().strip('"“”').strip()
        line = re.sub(
            r"^(?:[-*\d.)]+\s+)?(?:(?:customer|user|message|question|q)\s*:\s*)?",
            "",
            line,
            flags=re.IGNORECASE,
        )
        line = line.strip().strip('"“”').strip()
        if line:
            return line
    return ""


def strip_sign_off(reply: str, sign_off: str | None) -> str:
    if sign_off:
        reply = reply.replace(sign_off, "")
    return reply.strip()


def missing_keywords(reply: str, keywords: list[str]) -> list[str]:
    low = reply.lower()
    return [k for k in keywords if k.lower() not in low]


# ----------------------------------------------------------------------------------------------------
# Teacher-drafted phrasings and replies


def teacher_scenes(
    spec: ScenarioSpec, teacher: Teacher, *, on_step: Step | None = None
) -> tuple[list[Scene], int]:
    """`model_generator.per_intent` conversations per intent: a drafted user turn (in a persona's voice
    for every other one) and a drafted, fact-checked reply. Returns (scenes, replies rejected)."""
    gen = spec.model_generator
    scenes: list[Scene] = []
    rejected = 0
    for intent in spec.intents:
        for k in range(gen.per_intent):
            seed = derive_seed(spec.generate.seed, "teacher", intent.name, k)
            persona = spec.personas[(k // 2) % len(spec.personas)] if spec.personas and k % 2 == 1 else None
            user = _draft_user(spec, teacher, intent, persona, seed)
            if user is None:
                rejected += 1
            else:
                scene = _draft_reply(spec, teacher, intent, user, seed)
                if scene is None:
                    rejected += 1
                else:
                    scene.meta |= {
                        "category": "personas" if persona else "synonymous",
                        "generator": "teacher",
                        "seed": seed,
                    }
                    scene.meta |= (
                        {"persona": persona.name, "style": persona.style}
                        if persona
                        else {"paraphrase_set": intent.name}
                    )
                    scenes.append(scene)
            if on_step:
                on_step()
    return scenes, rejected


def _draft_user(
    spec: ScenarioSpec, teacher: Teacher, intent: Intent, persona: Persona | None, seed: int
) -> str | None:
    who = (
        f"\nWrite as this customer: {persona.style.replace('_', ' ')}. {persona.description}"
        if persona
        else ""
    )
    examples = "\n".join(f"- {e}" for e in intent.examples[:5])
    prompt = (
        f"Domain: {spec.domain.strip()}\nThe customer wants: {intent.description}\nExample messages:\n{examples}{who}\n\n"
        "Write one new message this customer might send, worded differently from the examples. Reply with the message only."
    )
    seen = {e.lower() for e in intent.examples}
    for attempt in range(spec.model_generator.max_attempts):
        draft = clean_line(teacher.complete([{"role": "user", "content": prompt}], seed=seed + attempt))
        if 3 <= len(draft) <= 400 and "{" not in draft and draft.lower() not in seen:
            return draft
    return None


def _draft_reply(spec: ScenarioSpec, teacher: Teacher, intent: Intent, user: str, seed: int) -> Scene | None:
    fact_ids = intent.facts
    facts = [spec.fact(f).text for f in fact_ids] or [f.text for f in spec.knowledge]
    system = (
        (spec.assistant.system_prompt or f"You are {spec.assistant.name}.")
        + "\n\nFacts you may use:\n"
        + "\n".join(f"- {f}" for f in facts)
    )
    keywords = spec.keywords(fact_ids)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    for attempt in range(spec.model_generator.max_attempts):
        reply = strip_sign_off(
            teacher.complete(messages, seed=seed + 1000 + attempt), spec.assistant.sign_off
        )
        if reply and not missing_keywords(reply, keywords):
            return Scene(
                [(user, reply)],
                {"intent": intent.name, "fact_check": "passed" if keywords else "none"},
                facts=fact_ids,
            )
    if intent.answer and "{" not in intent.answer:  # a slot-free reference answer is always right
        return Scene(
            [(user, intent.answer)],
            {"intent": intent.name, "fact_check": "replaced_by_reference"},
            facts=fact_ids,
        )
    return None


# ----------------------------------------------------------------------------------------------------
# Documents -> grounded Q&A


@dataclass(frozen=True)
class Passage:
    file: str
    index: int
    heading: str
    start: int  # character offsets in the file
    end: int
    text: str


def split_passages(path: Path, max_chars: int) -> list[Passage]:
    """Paragraphs grouped under their Markdown heading, up to max_chars per passage."""
    if not path.is_file():
        raise DataError("no such document", file=str(path), field="documents.files")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=str(path), field="documents.files") from None
    passages: list[Passage] = []
    heading = ""
    group: list[tuple[int, int]] = []  # (start, end) of paragraphs in the current passage

    def flush() -> None:
        if group:
            start, end = group[0][0], group[-1][1]
            passages.append(Passage(str(path), len(passages), heading, start, end, text[start:end].strip()))
            group.clear()

    for m in re.finditer(r"\S(?:.*\S)?(?:\n(?!\s*\n).*\S)*", text):  # blocks separated by blank lines
        block = m.group(0)
        if block.startswith("#"):
            flush()
            first, _, rest = block.partition("\n")
            heading = first.lstrip("#").strip()
            if not rest.strip():
                continue
            start = m.start() + len(first) + 1
        else:
            start = m.start()
        if group and m.end() - group[0][0] > max_chars:
            flush()
        group.append((start, m.end()))
    flush()
    return [p for p in passages if len(p.text) >= 40]  # skip stubs too short to ask about


_STOP = set(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "you",
        "your",
        "i",
        "we",
        "they",
        "he",
        "she",
        "them",
        "our",
        "can",
        "could",
        "would",
        "should",
        "will",
        "may",
        "might",
        "do",
        "does",
        "did",
        "not",
        "no",
        "yes",
        "so",
        "than",
        "then",
        "there",
        "here",
        "about",
        "into",
        "just",
        "also",
        "more",
        "most",
        "very",
        "any",
        "all",
        "some",
        "each",
        "every",
        "have",
        "has",
        "had",
        "what",
        "which",
        "who",
        "when",
        "where",
        "why",
        "how",
    ]
)


def grounding(answer: str, passage: str) -> tuple[float, list[str]]:
    """(share of the answer's content words found in the passage, numbers in the answer missing from it)."""
    words = [w for w in re.findall(r"[a-z0-9][a-z0-9.\-]*", answer.lower()) if w not in _STOP and len(w) > 2]
    source = passage.lower()
    share = sum(w.strip(".-") in source for w in words) / len(words) if words else 0.0
    missing = [n for n in re.findall(r"\d+(?:[.,]\d+)?", answer) if n not in passage]
    return share, missing


def document_scenes(
    spec: ScenarioSpec, teacher: Teacher, *, on_step: Step | None = None
) -> tuple[list[Scene], int]:
    """Grounded Q&A conversations, each citing its passage in meta.source. Returns (scenes, rejected)."""
    docs = spec.documents
    passages = [p for f in docs.files for p in split_passages(Path(f), docs.passage_chars)]
    if docs.max_passages:
        passages = passages[: docs.max_passages]
    scenes: list[Scene] = []
    rejected = 0
    for passage in passages:
        for k in range(docs.per_passage):
            seed = derive_seed(spec.generate.seed, "documents", passage.file, passage.index, k)
            scene = _grounded_qa(spec, teacher, passage, seed)
            if scene is None:
                rejected += 1
            else:
                scenes.append(scene)
            if on_step:
                on_step()
    return scenes, rejected


def _grounded_qa(spec: ScenarioSpec, teacher: Teacher, passage: Passage, seed: int) -> Scene | None:
    ask = (
        f"Here is a passage from a document ({Path(passage.file).name}, section '{passage.heading}'):\n\n{passage.text}\n\n"
        "Write one question a customer could ask that this passage answers. Reply with the question only."
    )
    system = (
        spec.assistant.system_prompt or f"You are {spec.assistant.name}."
    ) + f"\n\nAnswer only from this passage:\n{passage.text}"
    for attempt in range(spec.model_generator.max_attempts):
        question = clean_line(teacher.complete([{"role": "user", "content": ask}], seed=seed + attempt))
        if len(question) < 5:
            continue
        messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
        reply = strip_sign_off(
            teacher.complete(messages, seed=seed + 1000 + attempt), spec.assistant.sign_off
        )
        share, missing_numbers = grounding(reply, passage.text)
        if reply and share >= spec.documents.min_grounding and not missing_numbers:
            source = {"file": passage.file, "passage": passage.index, "heading": passage.heading}
            source |= {"start": passage.start, "end": passage.end, "text": passage.text}
            meta = {"category": DOCUMENT_CATEGORY, "generator": "documents", "seed": seed, "source": source}
            return Scene([(question, reply)], meta | {"grounding": round(share, 3)})
    return None
