"""Build training conversations, a held-out eval suite and a coverage report from a scenario spec.

    chattune scenarios build examples/scenarios.yaml [generate.per_category=50 ...] [--out DIR]
    result = build("examples/scenarios.yaml", "scenarios/kettlebyte")

Writes into the output directory:
  conversations.jsonl  OpenAI-messages training conversations; meta: category, generator, seed, and
                       intent / persona / expected_behavior where they apply (document Q&A: source)
  eval.jsonl           held-out prompts, one per line: {"messages": [system?, user, (assistant, user)...],
                       "reference": str, "rubric": {"must_contain", "must_not_contain", "regex"},
                       "meta": {"category", "expected_behavior": answer|clarify|decline|correct, "intent"}}
  coverage.html/.png/.json, and spec.yaml (the resolved spec that produced them)

Order of work: the template engine fills every category from the spec (no model), the teacher adds
drafted conversations and document Q&A when enabled, then per category a few conversations are held
out for eval and every training conversation sharing a user turn with them is dropped.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import Progress

from chattune.data.conversation import Conversation, Message, parse_openai_record, write_jsonl
from chattune.errors import DataError
from chattune.scenarios.coverage import CoverageReport, coverage
from chattune.scenarios.engine import Scene, TemplateEngine
from chattune.scenarios.generators import derive_seed, document_scenes, teacher_scenes
from chattune.scenarios.spec import ScenarioSpec, load_spec

ATTEMPTS_PER_CONVERSATION = 20  # draws per wanted conversation before a category counts as exhausted


@dataclass
class BuildResult:
    out_dir: Path
    conversations_file: Path
    eval_file: Path
    n_conversations: int
    n_eval: int
    coverage: CoverageReport
    report_files: dict[str, Path]
    rejected: dict[str, int] = field(default_factory=dict)  # generator -> drafts dropped by the checks
    teacher_requests: int = 0
    teacher_cache_hits: int = 0

    def summary(self) -> str:
        dropped = ", ".join(f"{n} {g} drafts rejected" for g, n in self.rejected.items() if n)
        teacher = (
            f"; teacher: {self.teacher_requests} requests, {self.teacher_cache_hits} from cache"
            if self.teacher_requests or self.teacher_cache_hits
            else ""
        )
        return (
            f"{self.n_conversations} conversations -> {self.conversations_file}, {self.n_eval} eval prompts -> {self.eval_file}, "
            f"report -> {self.report_files['html']}{teacher}{'; ' + dropped if dropped else ''}"
        )


def build(
    spec_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    overrides: list[str] | None = None,
    console: Console | None = None,
) -> BuildResult:
    console = console or Console(quiet=True)
    spec = load_spec(spec_path, overrides)
    gen = spec.generate
    out = Path(out_dir) if out_dir is not None else gen.output_dir
    engine = TemplateEngine(spec)

    # 1. The template engine: per category, draw until enough distinct conversations (or attempts run out).
    scenes: dict[str, list[Scene]] = {}
    wanted = gen.per_category + gen.eval_per_category
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("template engine", total=len(gen.categories) * wanted)
        for cat in gen.categories:
            scenes[cat], seen = [], set()
            for i in range(wanted * ATTEMPTS_PER_CONVERSATION):
                seed = derive_seed(gen.seed, cat, i)
                scene = engine.draw(cat, random.Random(seed))
                if scene is None:
                    break  # the spec has nothing for this category; the coverage report says so
                key = tuple(_norm(u) for u, _ in scene.turns)
                if key in seen:
                    continue
                seen.add(key)
                scene.meta = {"category": cat, "generator": "template", "seed": seed, **scene.meta}
                scenes[cat].append(scene)
                progress.advance(task)
                if len(scenes[cat]) == wanted:
                    break

    # 2. The teacher model, when asked for: drafted phrasings and replies, and document Q&A.
    rejected: dict[str, int] = {}
    teacher = None
    if spec.model_generator.enabled or spec.documents.files:
        from chattune.teacher import Teacher

        teacher = Teacher(spec.teacher)
        with Progress(console=console, transient=True) as progress:
            if spec.model_generator.enabled:
                task = progress.add_task(
                    f"teacher ({spec.teacher.model})",
                    total=len(spec.intents) * spec.model_generator.per_intent,
                )
                drafted, rejected["teacher"] = teacher_scenes(
                    spec, teacher, on_step=lambda: progress.advance(task)
                )
                for s in drafted:
                    scenes.setdefault(s.meta["category"], []).append(s)
            if spec.documents.files:
                task = progress.add_task("documents", total=None)
                drafted, rejected["documents"] = document_scenes(
                    spec, teacher, on_step=lambda: progress.advance(task)
                )
                for s in drafted:
                    scenes.setdefault(s.meta["category"], []).append(s)

    # 3. Hold out eval prompts per category; drop training conversations that share a user turn with them.
    eval_scenes: list[Scene] = []
    for category, pool in scenes.items():  # the built categories and document_qa
        order = list(range(len(pool)))
        random.Random(derive_seed(gen.seed, "eval", category)).shuffle(order)
        taken: set[str] = set()
        for idx in order:
            if len(taken) >= min(
                gen.eval_per_category, len(pool) // 2
            ):  # never hold out more than half a category
                break
            last_user = _norm(pool[idx].turns[-1][0])
            if last_user not in taken:
                taken.add(last_user)
                eval_scenes.append(pool[idx])
    held_out = {_norm(s.turns[-1][0]) for s in eval_scenes}
    eval_ids = {id(s) for s in eval_scenes}
    train_scenes = [
        s
        for pool in scenes.values()
        for s in pool
        if id(s) not in eval_ids and not any(_norm(u) in held_out for u, _ in s.turns)
    ]

    conversations = [to_conversation(spec, s) for s in train_scenes]
    for i, conv in enumerate(conversations, start=1):
        if problems := structure_problems(conv):  # a bug in a generator, not in the user's spec
            raise DataError(
                f"generated conversation is invalid: {'; '.join(problems)}",
                file="conversations.jsonl",
                line=i,
            )

    # 4. Write everything.
    out.mkdir(parents=True, exist_ok=True)
    conversations_file, eval_file = out / "conversations.jsonl", out / "eval.jsonl"
    write_jsonl(conversations_file, conversations)
    with eval_file.open("w", encoding="utf-8") as fh:
        for s in eval_scenes:
            fh.write(json.dumps(to_eval_record(spec, s), ensure_ascii=False) + "\n")
    (out / "spec.yaml").write_text(
        yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), encoding="utf-8"
    )
    report = coverage(
        conversations,
        list(gen.categories),
        target=gen.per_category,
        thin_fraction=gen.thin_fraction,
        near_duplicate_threshold=gen.near_duplicate_threshold,
    )
    report.warnings += fact_warnings(spec)
    report_files = report.write(out)
    report.print(console)
    return BuildResult(
        out_dir=out,
        conversations_file=conversations_file,
        eval_file=eval_file,
        n_conversations=len(conversations),
        n_eval=len(eval_scenes),
        coverage=report,
        report_files=report_files,
        rejected=rejected,
        teacher_requests=teacher.requests if teacher else 0,
        teacher_cache_hits=teacher.cache_hits if teacher else 0,
    )


# ----------------------------------------------------------------------------------------------------


def _norm(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _reply(spec: ScenarioSpec, text: str) -> str:
    sign_off = spec.assistant.sign_off
    return (
        f"{text.strip()}\n\n{sign_off}" if sign_off and not text.rstrip().endswith(sign_off) else text.strip()
    )


def _messages(spec: ScenarioSpec, scene: Scene) -> list[Message]:
    messages = (
        [Message(role="system", content=spec.assistant.system_prompt.strip())]
        if spec.assistant.system_prompt
        else []
    )
    for user, assistant in scene.turns:
        messages += [
            Message(role="user", content=user),
            Message(role="assistant", content=_reply(spec, assistant)),
        ]
    return messages


def to_conversation(spec: ScenarioSpec, scene: Scene) -> Conversation:
    return Conversation(messages=_messages(spec, scene), meta=dict(scene.meta))


def to_eval_record(spec: ScenarioSpec, scene: Scene) -> dict[str, Any]:
    """One eval-suite line: the conversation up to its last user turn, the reference reply and a rubric."""
    messages = _messages(spec, scene)
    behavior = scene.meta.get("expected_behavior", "answer")
    must_contain = [spec.assistant.sign_off] if spec.assistant.sign_off else []
    regex: list[str] = []
    if behavior in ("answer", "correct"):  # the facts' keywords this reference states (slots pick among them)
        must_contain += [k for k in spec.keywords(scene.facts) if k.lower() in messages[-1].content.lower()]
    if behavior == "clarify":
        regex.append(r"\?")  # a clarifying question asks something
    return {
        "messages": [m.model_dump(exclude_none=True) for m in messages[:-1]],
        "reference": messages[-1].content,
        "rubric": {
            "must_contain": must_contain,
            "must_not_contain": list(scene.must_not_contain),
            "regex": regex,
        },
        "meta": {"category": scene.meta["category"], "expected_behavior": behavior}
        | ({"intent": scene.meta["intent"]} if scene.meta.get("intent") else {}),
    }


def fact_warnings(spec: ScenarioSpec) -> list[str]:
    """Reference replies that leave out a keyword of a fact they say they rely on (slot-free ones only)."""
    refs = [(f"intent {it.name}", it.answer, it.facts) for it in spec.intents]
    refs += [
        (f"intent {it.name} follow-up {fu.user!r}", fu.answer, fu.facts)
        for it in spec.intents
        for fu in it.follow_ups
    ]
    refs += [(f"false premise {fp.user!r}", fp.reply, fp.facts) for fp in spec.false_premises]
    out = []
    for where, text, facts in refs:
        if (
            text
            and "{" not in text
            and (missing := [k for k in spec.keywords(facts) if k.lower() not in text.lower()])
        ):
            out.append(f"{where}: the reply does not mention {', '.join(map(repr, missing))} from its facts")
    return out


def structure_problems(conv: Conversation) -> list[str]:
    """What makes a conversation unfit to train on: system first (if any), user/assistant alternating
    from a user turn, ending on an assistant turn, no empty turn; and it must survive a JSON round trip."""
    problems = []
    try:
        parse_openai_record(json.loads(json.dumps(conv.to_openai())))
    except DataError as e:
        problems.append(str(e))
    roles = [m.role for m in conv.messages]
    body = roles[1:] if roles[:1] == ["system"] else roles
    if "system" in body:
        problems.append("a system message after the first turn")
    if not body or any(r != ("user" if i % 2 == 0 else "assistant") for i, r in enumerate(body)):
        problems.append(f"roles do not alternate user/assistant: {roles}")
    if roles and roles[-1] != "assistant":
        problems.append("does not end on an assistant turn")
    problems += [f"messages[{i}] is empty" for i, m in enumerate(conv.messages) if not m.content.strip()]
    return problems
