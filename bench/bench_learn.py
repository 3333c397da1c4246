"""Does a default fine-tune learn? chattune with a config naming only the model and the data, against TRL's
usual recipe, on an invented product that no model can know beforehand (bench/learnset.py).

    python bench/bench_learn.py                          # seed 0: chattune defaults vs TRL usual recipe
    python bench/bench_learn.py --seeds 0 1 --trl none   # chattune alone, two invented products
    python bench/bench_learn.py --chattune train.epochs=3 --trl none   # an ablation: any dotted override
    python bench/bench_learn.py --family app --trl none  # the same check on an invented app, worded apart
    python bench/bench_learn.py --family service --trl none  # ... and on an invented subscription service
    python bench/bench_learn.py --short-system --trl none  # shorter conversations: ~27,000 tokens an epoch

`--family device` (the default) invents a physical device (bench/learnset.py); `--family app` invents a
software product with its own wording, varied clarify and redirect replies and another sign-off
(bench/learnset_app.py); `--family service` invents a subscription service (bike sharing, a gym chain, ...)
worded independently again, after an outside tester's description (bench/learnset_service.py), so a recipe
is not judged on one generator's phrasing alone.

For each seed and trainer: held-out accuracy per kind (fact, clarify, out_of_scope, impossible, style;
greedy, 80 new tokens, regex-scored), general ability kept (general questions asked with no system
prompt, as a user of the base model would: of those the base model answers right, the share the tuned
model still answers right; "firm": the same share over the base's answers that were never a near
coin-flip on the way to being right, see decision_margins), off-topic requests answered without the
prompt (the other two families' off-topic requests, which this set never trains, asked with no system
prompt: the share the tuned model answers rather than redirects; the base redirects none), and training
wall time (the whole
`chattune train` command, model loading and tokenisation included). TRL's usual recipe: SFTTrainer,
full fine-tuning, 3 epochs, batch 8 unpacked, lr 1e-4 cosine, bf16, its defaults otherwise. Results go to bench/out/learn/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import learnset  # noqa: E402
import learnset_app  # noqa: E402
import learnset_service  # noqa: E402
from learnset import MIXES, LearnSet, score  # noqa: E402

from chattune.config import TrainConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out" / "learn"
KINDS = ["fact", "clarify", "out_of_scope", "impossible", "style"]
# A base answer is "firm" when no step on the way to its right answer was closer than this between the two
# likeliest tokens (1 nat: the runner-up at most e^-1 = 37% as likely); the rest are near coin-flips.
FIRM_NATS = 1.0
# A redirect in any family's wording ("I can only help with ...", "That's outside what I can help with").
REDIRECTED = r"outside what|can(no|'|’)?t help|only (answer|help)|not something I can|unable to help"
# generator families: the same contract (seed, n_train, mix) -> LearnSet, different products and wording
FAMILIES = {
    "device": learnset.make_learnset,
    "app": learnset_app.make_learnset,
    "service": learnset_service.make_learnset,
}
# each family's off-topic requests, some redirected in its training and the rest held out
OFF_TOPIC = {
    "device": learnset.OUT_OF_SCOPE,
    "app": learnset_app.OUT_OF_SCOPE,
    "service": learnset_service.OUT_OF_SCOPE,
}
# chattune's own train.seed default; TRL runs with it too unless --train-seeds says otherwise
DEFAULT_TRAIN_SEED: int = TrainConfig.model_fields["seed"].default


def unprompted_off_topic(family: str) -> list[str]:
    """The other families' off-topic requests: a user of the tuned model asking, without the domain's
    system prompt, for what the domain's assistant redirects ("Write me a poem about the sea."). The
    template may put its own prompt there (SmolLM2's: "You are a helpful AI assistant named SmolLM ...")."""
    return [q for other, asked in OFF_TOPIC.items() if other != family for q in asked]


def answered_share(model_path: str, requests: list[str]) -> float:
    """The share of `requests` (no system prompt) answered rather than redirected."""
    answers = answer_all(model_path, [[{"role": "user", "content": q}] for q in requests], max_new_tokens=40)
    return sum(re.search(REDIRECTED, a, re.I) is None for a in answers) / len(answers)


def load_for_answers(model_path: str) -> tuple[Any, Any]:
    """(tokenizer, fp32 model in eval mode) for a model folder, GGUF file or "embedded"."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chattune.model import resolve_source

    source = resolve_source(model_path)
    tok = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=torch.float32)
    return tok, model.eval()


def answer_all(model_path: str, prompts: list[list[dict[str, str]]], max_new_tokens: int = 80) -> list[str]:
    """Greedy answers, batched with left padding (the same greedy decoding as `chattune chat --temperature 0`;
    `chattune eval` answers its general questions the same way)."""
    from chattune.generate import greedy_replies

    tok, model = load_for_answers(model_path)
    return greedy_replies(model, tok, prompts, max_new_tokens=max_new_tokens)


def decision_margins(model_path: str, questions: list[str], patterns: list[str]) -> list[float | None]:
    """For each general question (no system prompt), how firmly the model's greedy answer is right: the
    smallest gap, in nats, between the two likeliest next tokens along the answer up to where its pattern
    first matches (None if it never does). A small gap is a near coin-flip the base model happened to
    win; any change to the weights may flip it, so "general kept" is also shown over the firm ones."""
    import torch

    tok, model = load_for_answers(model_path)
    margins: list[float | None] = []
    for question, pattern in zip(questions, patterns, strict=True):
        ids = tok.apply_chat_template(
            [{"role": "user", "content": question}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        )["input_ids"]
        with torch.inference_mode():
            out = model.generate(
                ids,
                max_new_tokens=80,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
                pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
            )
        new_tokens = out.sequences[0, ids.shape[1] :]
        smallest, found = float("inf"), None
        for i, step_scores in enumerate(out.scores):
            top = torch.log_softmax(step_scores[0].float(), -1).topk(2).values
            smallest = min(smallest, float(top[0] - top[1]))
            if re.search(pattern, tok.decode(new_tokens[: i + 1], skip_special_tokens=True), re.I | re.S):
                found = smallest
                break
        margins.append(found)
    return margins


def evaluate(model_path: str, ls: LearnSet) -> dict[str, Any]:
    general_prompts = [[{"role": "user", "content": g["question"]}] for g in ls.general]
    answers = answer_all(model_path, [it["messages"] for it in ls.test] + general_prompts)
    test_answers, general_answers = answers[: len(ls.test)], answers[len(ls.test) :]
    per_kind: dict[str, list[bool]] = defaultdict(list)
    misses = []
    for it, a in zip(ls.test, test_answers, strict=True):
        per_kind[it["kind"]].append(score(a, it))
        if not per_kind[it["kind"]][-1]:
            misses.append({"kind": it["kind"], "q": it["messages"][-1]["content"], "a": a})
    general = [
        score(a, {"patterns": [g["pattern"]], "forbid": []})
        for g, a in zip(ls.general, general_answers, strict=True)
    ]
    return {
        "overall": sum(sum(v) for v in per_kind.values()) / sum(len(v) for v in per_kind.values()),
        "per_kind": {k: sum(v) / len(v) for k, v in per_kind.items()},
        "general": general,
        "misses": misses,  # every held-out item answered wrongly, to read what went wrong
        "samples": [
            {"kind": it["kind"], "q": it["messages"][-1]["content"], "a": a}
            for it, a in list(zip(ls.test, test_answers, strict=True))[::6]
        ]
        + [
            {"kind": "general", "q": g["question"], "a": a}
            for g, a in list(zip(ls.general, general_answers, strict=True))[::5]
        ],
    }


def with_short_system(ls: LearnSet) -> LearnSet:
    """The same set under a one-line system prompt (no persona or manner): ~36 fewer tokens in each
    conversation, ~27,000 tokens an epoch instead of ~40,500, near the ~30,000 that issue #13's tester's
    set implies (its 3 epochs were 96 steps of two 512-token rows). The sign-off is learned from the
    replies alone."""
    short = f"You are {ls.brand}'s assistant."

    def swap(messages: list[dict[str, str]]) -> list[dict[str, str]]:
        return [
            m | {"content": short} if m["role"] == "system" and m["content"] == ls.system else m
            for m in messages
        ]

    return replace(
        ls,
        system=short,
        train=[c | {"messages": swap(c["messages"])} for c in ls.train],
        test=[it | {"messages": swap(it["messages"])} for it in ls.test],
    )


def train_chattune(work: Path, overrides: list[str]) -> tuple[str, float]:
    config = work / "chattune.yaml"
    config.write_text(f"model:\n  name: embedded\ndata:\n  train_file: {work / 'train.jsonl'}\n")
    cmd = [sys.executable, "-m", "chattune", "train", str(config), f"output.dir={work / 'runs'}", *overrides]
    start = time.perf_counter()
    log = work / "chattune.log"
    with log.open("w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=work, env=_env()).returncode
    seconds = time.perf_counter() - start
    if rc != 0:
        sys.exit(f"chattune train failed (rc {rc}); see {log}:\n" + log.read_text()[-3000:])
    # Only final/ is evaluated; the checkpoints (weights and optimizer state) are ~2.6 GB a run.
    shutil.rmtree(work / "runs" / "chattune" / "checkpoints", ignore_errors=True)
    return str(work / "runs" / "chattune" / "final"), seconds


def train_trl(work: Path, train_seed: int) -> tuple[str, float]:
    start = time.perf_counter()
    log = work / "trl.log"
    with log.open("w") as f:
        rc = subprocess.run(
            [sys.executable, __file__, "--child-trl", str(work), "--child-seed", str(train_seed)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=_env(),
        ).returncode
    if rc != 0:
        sys.exit(f"TRL failed (rc {rc}); see {log}:\n" + log.read_text()[-3000:])
    return str(work / "trl" / "final"), time.perf_counter() - start


def child_trl(work: Path, train_seed: int) -> None:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from chattune.model import resolve_source

    path = resolve_source("embedded").path
    records = [{"messages": json.loads(line)["messages"]} for line in (work / "train.jsonl").open()]
    args = SFTConfig(
        output_dir=str(work / "trl"),
        num_train_epochs=3,
        per_device_train_batch_size=8,
        learning_rate=1e-4,
        lr_scheduler_type="cosine",
        bf16=True,
        use_cpu=True,
        save_strategy="no",
        report_to=[],
        logging_steps=10,
        seed=train_seed,
        disable_tqdm=True,
    )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(path)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(records), processing_class=tok
    )
    trainer.train()
    trainer.save_model(str(work / "trl" / "final"))
    tok.save_pretrained(str(work / "trl" / "final"))


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument(
        "--mix",
        choices=list(MIXES),
        default="even",
        help="fact-heavy: every paraphrase twice, behaviours 7%% each instead of 16%% (rare behaviours)",
    )
    p.add_argument(
        "--family",
        choices=list(FAMILIES),
        default="device",
        help="device: an invented device (learnset.py); app: an invented app worded apart (learnset_app.py); "
        "service: an invented subscription service worded apart again (learnset_service.py)",
    )
    p.add_argument(
        "--short-system",
        action="store_true",
        help="a one-line system prompt: ~27,000 tokens an epoch instead of ~40,500 (near the tester's set's size)",
    )
    p.add_argument("--trl", choices=["usual", "none"], default="usual")
    p.add_argument("--chattune", nargs="*", default=[], help="dotted overrides for the chattune run")
    p.add_argument(
        "--no-chattune", action="store_true", help="run TRL alone (its figures beside an earlier run)"
    )
    p.add_argument("--tag", default="default", help="name of this configuration in the output")
    p.add_argument(
        "--train-seeds",
        type=int,
        nargs="+",
        help="train each product once per training seed (train.seed, and TRL's seed): "
        "training alone moves a run's figures by several points, so compare means",
    )
    p.add_argument("--child-trl", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-seed", type=int, default=DEFAULT_TRAIN_SEED, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child_trl:
        return child_trl(a.child_trl, a.child_seed)
    OUT.mkdir(parents=True, exist_ok=True)
    rows = []
    runs = [(seed, t) for seed in a.seeds for t in (a.train_seeds or [None])]
    for seed, train_seed in runs:
        ls = FAMILIES[a.family](seed, a.n_train, a.mix)
        if a.short_system:
            ls = with_short_system(ls)
        # the defaults (device family, even mix) keep their old paths; any other set gets its own folder
        family = "" if a.family == "device" else f"-{a.family}"
        mix = "" if a.mix == "even" else f"-{a.mix}"
        short = "-short" if a.short_system else ""
        work = OUT / (
            f"seed{seed}-{a.tag}{family}{mix}{short}" + (f"-t{train_seed}" if train_seed is not None else "")
        )
        work.mkdir(parents=True, exist_ok=True)
        with (work / "train.jsonl").open("w") as f:
            for c in ls.train:
                f.write(json.dumps(c) + "\n")
        # The base model's answers do not change; the file is named by the questions they answered.
        asked = json.dumps([it["messages"] for it in ls.test] + [g["question"] for g in ls.general])
        base_file = OUT / f"base-seed{seed}-{hashlib.sha256(asked.encode()).hexdigest()[:12]}.json"
        if not base_file.is_file():
            base_file.write_text(json.dumps(evaluate("embedded", ls)))
        base = json.loads(base_file.read_text())
        if "general_margin" not in base:  # added 2026-12-06: older files gain it once
            base["general_margin"] = decision_margins(
                "embedded", [g["question"] for g in ls.general], [g["pattern"] for g in ls.general]
            )
            base_file.write_text(json.dumps(base))
        if "off_topic_answered" not in base:  # added 2026-12-07, as above
            base["off_topic_answered"] = answered_share("embedded", unprompted_off_topic(a.family))
            base_file.write_text(json.dumps(base))
        overrides = a.chattune + ([f"train.seed={train_seed}"] if train_seed is not None else [])
        trl_seed = DEFAULT_TRAIN_SEED if train_seed is None else train_seed
        trainers = [] if a.no_chattune else [("chattune", lambda w=work, o=overrides: train_chattune(w, o))]
        if a.trl == "usual":
            trainers.append(("trl", lambda w=work, t=trl_seed: train_trl(w, t)))
        for name, train in trainers:
            print(
                f"seed {seed}{'' if train_seed is None else f', training seed {train_seed}'}: training {name} ...",
                flush=True,
            )
            model_path, seconds = train()
            result = evaluate(model_path, ls)
            off_topic_answered = answered_share(model_path, unprompted_off_topic(a.family))
            base_right = [i for i, ok in enumerate(base["general"]) if ok]
            kept = sum(result["general"][i] for i in base_right) / max(1, len(base_right))
            firm = [i for i in base_right if (base["general_margin"][i] or 0.0) >= FIRM_NATS]
            kept_firm = sum(result["general"][i] for i in firm) / max(1, len(firm))
            # right where the base was wrong: many of a small model's answers are coin-flips either way
            gained = sum(now and not was for was, now in zip(base["general"], result["general"], strict=True))
            row = {
                "seed": seed,
                "train_seed": train_seed,
                "trainer": name,
                "tag": a.tag,
                "n_train": a.n_train,
                "mix": a.mix,
                "short_system": a.short_system,
                "family": a.family,
                "overrides": overrides if name == "chattune" else [],
                "train_seconds": round(seconds, 1),
                "heldout": result["overall"],
                **{k: result["per_kind"].get(k) for k in KINDS},
                "general_kept": kept,
                "base_general_right": len(base_right),
                "general_kept_firm": kept_firm,
                "base_general_firm": len(firm),
                "base_heldout": base["overall"],
                "general_lost": [ls.general[i]["question"] for i in base_right if not result["general"][i]],
                "general_gained": gained,
                "off_topic_answered": off_topic_answered,
                "base_off_topic_answered": base["off_topic_answered"],
            }
            rows.append(row)
            (work / f"{name}.json").write_text(
                json.dumps(row | {"samples": result["samples"], "misses": result.get("misses", [])}, indent=2)
            )
            print(json.dumps(row), flush=True)
    print()
    header = (
        f"{'seed':>4} {'trainer':10} {'held-out':>8} "
        + " ".join(f"{k[:8]:>8}" for k in KINDS)
        + f" {'general':>8} {'firm':>8} {'unprompt':>8} {'train s':>8}"
    )
    print(header)
    for r in rows:
        print(
            f"{r['seed']:>4} {r['trainer']:10} {r['heldout']:8.0%} "
            + " ".join(f"{r[k]:8.0%}" for k in KINDS)
            + f" {r['general_kept']:8.0%} {r['general_kept_firm']:8.0%} {r['off_topic_answered']:8.0%}"
            + f" {r['train_seconds']:8.0f}"
        )
    for line in summarise(rows):
        print(line)
    with (OUT / "results.jsonl").open("a") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def summarise(rows: list[dict[str, Any]]) -> list[str]:
    """Mean and range per trainer over its runs, when it ran more than once (products or training seeds):
    one run's behaviour figures move by a quarter with the training seed alone."""
    lines = []
    for trainer in dict.fromkeys(r["trainer"] for r in rows):
        runs = [r for r in rows if r["trainer"] == trainer]
        if len(runs) < 2:
            continue
        cells = []
        for key in ["heldout", *KINDS, "general_kept", "general_kept_firm", "off_topic_answered"]:
            values = [r[key] for r in runs if r.get(key) is not None]
            if not values:  # a figure older runs did not record
                continue
            cells.append(f"{key} {sum(values) / len(values):.0%} ({min(values):.0%}-{max(values):.0%})")
        seconds = [r["train_seconds"] for r in runs]
        lines.append(
            f"{trainer} over {len(runs)} runs, mean (range): "
            + ", ".join(cells)
            + f", train s {sum(seconds) / len(seconds):.0f} ({min(seconds):.0f}-{max(seconds):.0f})"
        )
    return lines


if __name__ == "__main__":
    main()
