"""`chattune eval`: measure a fine-tuned model against the model it started from.

    chattune eval runs/quickstart --suite examples/data/kettlebyte_eval.jsonl
    evaluate("runs/quickstart", suites=[Path("suite.jsonl")])        # -> EvalResult

Each model in turn (fine-tuned, then base; one in memory at a time) is loaded, scored on the validation
set (loss, perplexity, token accuracy on assistant tokens), warmed up with one short generation, then
answers every suite prompt with the same greedy settings while time to first token, latency and
tokens/s are recorded. Answers are scored (metrics.py, behavior.py, optionally judge.py), aggregated
overall and per category, and written to <out>/metrics.json (stable schema, for sweeps), items.jsonl
(every answer, side by side) and report.html (one file, plots embedded).

A run trained with `train.backend: openai` is evaluated through the API: its fine-tuned model against
the hosted base model (model.name), with the same timings; there are no local weights to take a
validation loss from, so the job's own result-file metrics are reported instead.

Items without a system turn get the run's trained system prompt (final/chat_defaults.json), for both
models alike: the fine-tune is evaluated the way it will be chatted with.

Both models also answer 115 general-knowledge questions with no system prompt (general.py; off with
--no-general or eval.general_check: false): metrics.json's "general" section gives the share of the base's
right answers the fine-tune kept, and the report lists those it lost.
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chattune.config import EvalConfig, RunConfig
from chattune.errors import ChattuneError
from chattune.evaluate import metrics as M
from chattune.evaluate.behavior import detect
from chattune.evaluate.general import MAX_NEW_TOKENS, general_kept, general_questions
from chattune.evaluate.suite import SuiteItem, load_suites
from chattune.generate import GenerationSettings, Reply, generate_reply, greedy_replies

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from chattune.config import TeacherConfig
    from chattune.evaluate.judge import Judge
    from chattune.provider import Provider

SCHEMA_VERSION = 1
WARMUP_TOKENS = 8  # enough to initialise kernels and caches; the warm-up is not timed


@dataclass
class ModelRun:
    """What one model did: its answers with timings and scores, and its validation metrics."""

    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)  # per item: answer, timings, metrics
    validation: dict[str, float] | None = None
    general_answers: list[str] | None = None  # to general.general_questions(), with no system prompt


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]

    @property
    def metrics_file(self) -> Path:
        return self.out_dir / "metrics.json"

    @property
    def report_file(self) -> Path:
        return self.out_dir / "report.html"


def evaluate(
    model: str,
    *,
    base: str | None = None,
    compare_base: bool = True,
    suites: list[Path] | None = None,
    val_file: Path | None = None,
    out_dir: Path | None = None,
    max_items: int | None = None,
    max_new_tokens: int | None = None,
    system: str | None = None,
    judge: TeacherConfig | None = None,
    general: bool | None = None,
    console: Console | None = None,
) -> EvalResult:
    """Evaluate `model` (a run, checkpoint, model folder, hub id or 'embedded') and, unless
    compare_base is off, its base model on the same prompts; write metrics, items and report. `general`
    (default: the run's eval.general_check) also asks both the shipped general-knowledge questions."""
    from chattune.chat import default_system_prompt
    from chattune.model import find_model_dir
    from chattune.provider import hosted_model, hosted_run

    console = console or Console()
    hosted = hosted_run(model)
    if hosted is not None:
        hosted_model(model, hosted[1])  # fail now if the job has not produced a model
    run_cfg = hosted[0] if hosted else find_model_dir(model)[1] if Path(model).is_dir() else None
    eval_cfg = run_cfg.eval if run_cfg else EvalConfig()

    # Resolve everything that can fail before loading any model.
    if not suites:
        if eval_cfg.suite_file is None:
            raise ChattuneError("no eval suite: pass --suite FILE (or set eval.suite_file in the run config)")
        suites = [eval_cfg.suite_file]
    items = load_suites(list(suites), max_items=max_items)
    if out_dir is None:
        if not Path(model).is_dir():
            raise ChattuneError(f"{model} is not a run directory: pass --out DIR for the evaluation's output")
        out_dir = Path(model) / "eval"
    base_name = (base or (run_cfg.model.name if run_cfg else None)) if compare_base else None
    if compare_base and base_name is None:
        console.print(
            "[yellow]no base model to compare with (not a run directory and no --base): evaluating one model[/]"
        )
    val, val_source = _validation_conversations(run_cfg, val_file) if hosted is None else ([], None)
    system = system if system is not None else default_system_prompt(model)
    settings = GenerationSettings(
        temperature=0.0, max_new_tokens=max_new_tokens or eval_cfg.suite_max_new_tokens
    )
    judge_obj = _make_judge(judge)
    check_general = eval_cfg.general_check if general is None else general

    console.print(
        f"evaluating [bold]{model}[/]"
        + (f" against base [bold]{base_name}[/]" if base_name else "")
        + f" on {len(items)} items from {', '.join(map(str, suites))}"
        + (f" and {len(val)} validation conversations" if val else " (no validation set)")
        + (f", and {len(general_questions())} general questions" if check_general else "")
    )
    runs = {
        "finetuned": _run_model(
            model, None, items, val, settings, system, run_cfg, judge_obj, console, general=check_general
        )
    }
    if base_name:
        base_cfg = run_cfg.model if run_cfg and base_name == run_cfg.model.name else None
        base_provider = None
        if hosted is not None and base_cfg is not None:  # the hosted base, through the same endpoint
            from chattune.hosted.client import make_client
            from chattune.provider import OpenAIProvider

            base_provider = OpenAIProvider(base_name, make_client(hosted[0].openai), base_name)
        runs["base"] = _run_model(
            base_name,
            base_cfg,
            items,
            val,
            settings,
            system,
            run_cfg,
            judge_obj,
            console,
            base_provider,
            general=check_general,
        )

    metrics = build_metrics(
        items,
        runs,
        meta={
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "models": {k: r.name for k, r in runs.items()},
            "suite_files": [str(p) for p in suites],
            "validation_set": val_source,
            "generation": {**asdict(settings), "system_prompt": system},
            "judge": judge.model if judge else None,
            **({"openai_job": _job_summary(hosted[1])} if hosted else {}),
        },
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(
        json.dumps(metrics, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    records = item_records(items, runs)
    with (out_dir / "items.jsonl").open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")

    from chattune.evaluate.report import print_summary, write_report

    write_report(out_dir / "report.html", metrics, records)
    print_summary(metrics, console)
    console.print(
        f"wrote {out_dir / 'metrics.json'}, {out_dir / 'items.jsonl'} and {out_dir / 'report.html'}"
    )
    return EvalResult(out_dir, metrics)


# ----------------------------------------------------------------------------------------------------
# One model


def _run_model(
    name: str,
    model_cfg: Any,
    items: list[SuiteItem],
    val: list[Any],
    settings: GenerationSettings,
    system: str | None,
    run_cfg: RunConfig | None,
    judge: Judge | None,
    console: Console,
    provider: Provider | None = None,
    *,
    general: bool = False,
) -> ModelRun:
    from chattune.provider import LocalProvider, complete, open_provider

    if provider is None:
        with console.status(f"loading {name} ..."):
            provider = open_provider(name, model_cfg)
    run = ModelRun(name)
    if val and isinstance(provider, LocalProvider):
        with console.status(f"{name}: validation loss on {len(val)} conversations ..."):
            run.validation = validation(provider.model, provider.tokenizer, val, run_cfg or RunConfig())
    if isinstance(provider, LocalProvider):
        provider.model.eval()
    answer = functools.partial(complete, provider)
    run.rows = answer_with(answer, items, settings, system=system, console=console, label=name)
    if general:
        run.general_answers = answer_general(provider, console, label=name)
    del provider, answer  # free the model's memory before the next one loads
    gc.collect()
    if judge is not None:
        for item, row in zip(items, run.rows, strict=True):
            verdict = judge.grade(item, row["answer"])
            row["judge_reason"] = verdict.reason
            row.update(M.score_answer(item, row["answer"], judge_score=verdict.score))
    return run


def _validation_conversations(
    run_cfg: RunConfig | None, val_file: Path | None
) -> tuple[list[Any], str | None]:
    """--val, else the run's val_file, else the same held-out share of train_file that training used.
    Returns the conversations and where they came from."""
    from chattune.data.conversation import read_jsonl

    if val_file is not None:
        return read_jsonl(val_file), str(val_file)
    if run_cfg is None:
        return [], None
    if run_cfg.data.val_file is not None:
        return read_jsonl(run_cfg.data.val_file), str(run_cfg.data.val_file)
    train_file = run_cfg.data.train_file
    if train_file is None or not Path(train_file).is_file():
        return [], None
    from chattune.train.recipe import copies_kept
    from chattune.train.setup import load_conversations

    held_out = load_conversations(run_cfg.data, run_cfg.train.seed, copies_kept(run_cfg)).val
    return held_out, f"{train_file} (held-out {run_cfg.data.val_fraction:.0%}, seed {run_cfg.train.seed})"


def validation(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, conversations: list[Any], cfg: RunConfig
) -> dict[str, float]:
    """Loss, perplexity and token accuracy on assistant tokens, with the run's batch and length settings."""
    from chattune.data.tokenize import tokenize_conversations
    from chattune.train.validation import validation_metrics

    examples, _ = tokenize_conversations(conversations, tokenizer, max_length=cfg.data.max_length)
    if not examples:
        return {}
    return validation_metrics(
        model,
        examples,
        batch_size=cfg.train.batch_size,
        max_length=cfg.data.max_length,
        packing=cfg.data.packing,
        pad_id=tokenizer.pad_token_id or 0,
    )


def answer_items(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    items: list[SuiteItem],
    settings: GenerationSettings,
    *,
    system: str | None = None,
    console: Console | None = None,
    label: str = "answering",
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """Answer every item (after one untimed warm-up), returning answer, timings and scores per item."""
    was_training = model.training
    model.eval()
    try:
        return answer_with(
            lambda m, s: generate_reply(model, tokenizer, m, s),
            items,
            settings,
            system=system,
            console=console,
            label=label,
            warmup=warmup,
        )
    finally:
        model.train(was_training)


def answer_with(
    reply: Callable[[list[dict[str, str]], GenerationSettings], Reply],
    items: list[SuiteItem],
    settings: GenerationSettings,
    *,
    system: str | None = None,
    console: Console | None = None,
    label: str = "answering",
    warmup: bool = True,
) -> list[dict[str, Any]]:
    """answer_items for any way of getting a reply (a local model, an API)."""
    if warmup and items:
        short = GenerationSettings(
            temperature=0.0, max_new_tokens=min(WARMUP_TOKENS, settings.max_new_tokens)
        )
        reply(items[0].with_system(system), short)
    rows = []
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console or Console(),
        transient=True,
        disable=console is None,
    )
    with progress:
        task = progress.add_task(label, total=len(items))
        for item in items:
            r = reply(item.with_system(system), settings)
            row: dict[str, Any] = {
                "answer": r.text,
                "ttft": r.time_to_first_token,
                "latency": r.total_time,
                "tokens_per_s": r.tokens_per_second,
                "answer_tokens": float(r.completion_tokens),
                "truncated": float(r.finish_reason == "length"),
                "detected": detect(r.text),
            }
            row.update(M.score_answer(item, r.text))
            rows.append(row)
            progress.advance(task)
    return rows


def answer_general(provider: Provider, console: Console, *, label: str) -> list[str]:
    """Greedy answers to the shipped general questions, asked with no system prompt (general.py)."""
    from chattune.provider import LocalProvider, complete

    questions = general_questions()
    with console.status(f"{label}: {len(questions)} general questions ..."):
        if isinstance(provider, LocalProvider):  # batched: ~6x faster than one by one on CPU
            return greedy_replies(
                provider.model,
                provider.tokenizer,
                [q.messages for q in questions],
                max_new_tokens=MAX_NEW_TOKENS,
            )
        settings = GenerationSettings(temperature=0.0, max_new_tokens=MAX_NEW_TOKENS)
        return [complete(provider, q.messages, settings).text for q in questions]


def _job_summary(state: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "job_id",
        "model",
        "fine_tuned_model",
        "method",
        "hyperparameters",
        "trained_tokens",
        "result_metrics",
    )
    return {k: state.get(k) for k in keys}


def _make_judge(cfg: TeacherConfig | None) -> Judge | None:
    if cfg is None:
        return None
    from chattune.evaluate.judge import Judge

    return Judge(cfg)


# ----------------------------------------------------------------------------------------------------
# Aggregation and records


def summarize(items: list[SuiteItem], run: ModelRun) -> dict[str, Any]:
    overall = M.aggregate(run.rows)
    overall.update(run.validation or {})
    return {"overall": overall, "per_category": M.by_category(run.rows, [i.category for i in items])}


def build_metrics(
    items: list[SuiteItem], runs: dict[str, ModelRun], *, meta: dict[str, Any]
) -> dict[str, Any]:
    """The metrics.json document. Keys are stable: a sweep ranks runs by finetuned.overall.<metric>."""
    out: dict[str, Any] = {"schema_version": SCHEMA_VERSION, **meta, "n_items": len(items)}
    out["higher_is_better"] = M.HIGHER_IS_BETTER
    out["finetuned"] = summarize(items, runs["finetuned"])
    out["base"] = summarize(items, runs["base"]) if "base" in runs else None
    if out["base"] is not None:
        ft, b = out["finetuned"], out["base"]
        out["delta"] = {
            "overall": M.delta(ft["overall"], b["overall"]),
            "per_category": {
                c: M.delta(ft["per_category"][c], b["per_category"][c]) for c in ft["per_category"]
            },
        }
    else:
        out["delta"] = None
    ft_general = runs["finetuned"].general_answers
    base_general = runs["base"].general_answers if "base" in runs else None
    out["general"] = (
        general_kept(general_questions(), base_general, ft_general) if ft_general is not None else None
    )
    return out


def item_records(items: list[SuiteItem], runs: dict[str, ModelRun]) -> list[dict[str, Any]]:
    """One record per item with both models' answers and metrics, and the score delta between them."""
    records = []
    for i, item in enumerate(items):
        rec: dict[str, Any] = {
            "id": item.id,
            "category": item.category,
            "expected_behavior": item.expected_behavior,
            "messages": item.messages,
            "reference": item.reference,
            "rubric": item.rubric.model_dump() if item.rubric else None,
        }
        for key, run in runs.items():
            rec[key] = run.rows[i]
        ft, b = rec["finetuned"].get("score"), rec.get("base", {}).get("score")
        rec["score_delta"] = ft - b if ft is not None and b is not None else None
        records.append(rec)
    return records
