"""Training speed and memory: chattune against TRL's SFTTrainer, same model, data, objective and steps.

    pip install -e .[bench]                      # adds trl
    python bench/bench_train.py                  # full fine-tuning, 20 steps, A/B/A/B (~35 min on 2 idle cores)
    python bench/bench_train.py --lora           # LoRA r=16 on every linear layer
    python bench/bench_train.py --gpu            # CUDA: adds TRL + Liger kernels; MFU against the GPU's bf16 peak
    python bench/bench_train.py --steps 6 --repeats 1 --trl grouped     # a quick look

What it does, in one invocation:
1. Generates 2,000 chat conversations deterministically (seeded): a system prompt and 1-4 user/assistant
   turns, turn lengths log-normal like real chat data (short questions, longer answers), so a
   conversation is ~40-600 tokens and a few are cut at --max-length. It tokenises them once with
   chattune's own assistant-only labelling; TRL gets exactly those `input_ids`/`labels` as a
   pre-tokenised dataset (TRL 1.x leaves a given `labels` column as is), so both optimise the mean
   cross-entropy over the same assistant tokens.
2. Checks the objective is the same: on one fixed batch of 8 conversations, the untrained model's loss
   computed by chattune (`validation_metrics`) and by TRL (`SFTTrainer.compute_loss`) must agree to
   1e-3 relative in fp32. Measures the machine's bf16 and fp32 matmul peak (for MFU).
3. Runs chattune and each TRL configuration (padded, length-grouped, padding-free, packed; all bf16 or all --precision fp32,
   fused AdamW, no gradient checkpointing) in its own subprocess, with the same batch size, max
   length, learning rate (constant), clipping and step count. Round 1 screens every TRL
   configuration; each further round (--repeats) runs chattune then TRL's best again: A/B/A/B.
4. Prints per system: supervised (trained) tokens/s, total (non-padding) tokens/s, s/step, peak RSS,
   MFU, final and mean loss; then chattune/TRL-best ratios. The first --warmup steps are not timed.

Loss curves: the two systems see the same conversations in different orders and batch shapes, so the
per-step losses differ by batch noise, not by math (step 2 proves the math). The check pairs the
curves step by step (the shared downward trend cancels) and fails if the mean difference exceeds four
standard errors of the paired differences plus 3% of the loss: four SE makes a false alarm unlikely
(p < 1e-4), and 3% covers the real, small effect of chattune's packed rows carrying about twice the
tokens of a padded batch (less gradient noise per step at the same learning rate).

MFU counts the FLOPs the objective needs, the same for both systems: 6 x (non-embedding parameters)
per token, 6 x (vocab x hidden) per *supervised* token for the output head (scoring other positions
is wasted work), and causal attention within each conversation, 6 x layers x hidden x n(n+1) per
conversation of n tokens. LoRA: the frozen base still costs forward and input-gradient FLOPs (4N);
only the adapter's weight gradients are skipped, so 4 x N per token is counted instead of 6 x N.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
TRL_CONFIGS = {
    # name: SFTConfig overrides
    "padded": {},
    "grouped": {"train_sampling_strategy": "group_by_length"},
    # the inputs come pre-truncated to --max-length; TRL 1.x refuses max_length with unpacked padding_free
    "padding_free": {"padding_free": True, "max_length": None},
    "packed": {"packing": True},  # best-fit decreasing; implies padding_free (one flattened row)
    "liger": {"use_liger_kernel": True, "padding_free": True, "max_length": None},  # CUDA only: --gpu adds it
}

# chattune's fastest setting per method (compile is off by default in chattune itself). Full: compiled
# decoder layers. LoRA: eager, where the fused LoRA layers run (under compile, peft's own forward).
CHATTUNE_DEFAULT = {"full": ["train.compile=true"], "lora": []}

# ---------------------------------------------------------------------------------------------------
# data

SYSTEMS = [
    "You are a helpful assistant.",
    "You are Kit, the support assistant for Brewly kitchen appliances. Be concise, friendly and accurate.",
    "You are a careful tutor. Explain step by step and check the student's understanding before moving on.",
    "You help developers with Python and data engineering questions. Prefer short code examples.",
    "You are a travel planner. Ask about budget and dates when they are missing, and suggest concrete options.",
    "Answer as a patient librarian would: cite sources when you can and say plainly when you do not know.",
]
SUBJECTS = [
    "the kettle",
    "my order",
    "the invoice",
    "this function",
    "the train schedule",
    "a recipe for soup",
    "the project plan",
    "our database",
    "the garden",
    "my bike",
    "the report",
    "a birthday present",
    "the new phone",
    "the budget",
    "a job interview",
    "the weather station",
    "the printer",
    "my essay",
]
VERBS = [
    "fix",
    "explain",
    "compare",
    "reset",
    "improve",
    "plan",
    "check",
    "summarise",
    "translate",
    "speed up",
    "clean",
    "organise",
    "test",
    "describe",
    "choose",
    "update",
    "estimate",
    "review",
]
CONNECT = [
    "because",
    "although",
    "so that",
    "while",
    "after",
    "before",
    "unless",
    "whenever",
    "and then",
    "but",
]
CLAUSES = [
    "it stopped working yesterday",
    "the numbers do not add up",
    "I only have an hour",
    "the light keeps blinking",
    "we need it by Friday",
    "the manual is unclear",
    "the first attempt failed",
    "it costs too much",
    "my team disagrees",
    "the results look odd",
    "I tried the usual steps",
    "the deadline moved",
    "you should start with the simplest option",
    "the second step matters most",
    "most people miss this detail",
    "it depends on your budget",
    "a quick test will tell you",
    "the default settings are usually fine",
    "you can undo it later",
    "this is the common cause",
    "the safest choice is to wait",
]
OPENERS = [
    "Sure.",
    "Good question.",
    "Here is how.",
    "Let us go through it.",
    "Short answer first.",
    "Of course.",
]
STEPS = ["First,", "Then", "Next,", "After that,", "Finally,", "If that fails,", "Also,", "In short,"]


def _sentence(rng: random.Random) -> str:
    s = f"{rng.choice(['You can', 'We could', 'Try to', 'It helps to', 'Remember to'])} {rng.choice(VERBS)} {rng.choice(SUBJECTS)}"
    if rng.random() < 0.7:
        s += f" {rng.choice(CONNECT)} {rng.choice(CLAUSES)}"
    return s + rng.choice([".", ".", ".", "!", "; " + rng.choice(CLAUSES) + "."])


def _text(rng: random.Random, words: int, *, question: bool) -> str:
    parts: list[str] = []
    if question:
        parts.append(
            f"How do I {rng.choice(VERBS)} {rng.choice(SUBJECTS)} {rng.choice(CONNECT)} {rng.choice(CLAUSES)}?"
        )
    else:
        parts.append(rng.choice(OPENERS))
    while sum(len(p.split()) for p in parts) < words:
        lead = rng.choice(STEPS) + " " if not question and rng.random() < 0.4 else ""
        parts.append(lead + _sentence(rng))
        if not question and rng.random() < 0.12:
            parts.append(
                "\n\n" + "\n".join(f"{i + 1}. {_sentence(rng)}" for i in range(rng.randint(2, 5))) + "\n\n"
            )
    return " ".join(parts).strip()


def make_conversations(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Deterministic chat data. Word counts are log-normal (median 18 for users, 70 for answers), the
    long-tailed shape of real chat datasets; 1-4 exchanges, fewer more often."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        messages = [{"role": "system", "content": rng.choice(SYSTEMS)}]
        for _ in range(rng.choices([1, 2, 3, 4], weights=[45, 30, 15, 10])[0]):
            messages.append(
                {
                    "role": "user",
                    "content": _text(rng, int(rng.lognormvariate(math.log(18), 0.7)), question=True),
                }
            )
            messages.append(
                {
                    "role": "assistant",
                    "content": _text(rng, int(rng.lognormvariate(math.log(70), 0.6)), question=False),
                }
            )
        out.append({"messages": messages})
    return out


def prepare_data(work: Path, n: int, max_length: int, model: str) -> dict[str, Any]:
    """Write the conversations (chattune's input) and their tokenisation (TRL's input); return stats."""
    from chattune.config import ModelConfig
    from chattune.data.conversation import Conversation
    from chattune.data.tokenize import tokenize_conversations
    from chattune.model import load_tokenizer

    records = make_conversations(n)
    (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    tokenizer = load_tokenizer(ModelConfig(name=model))
    examples, stats = tokenize_conversations(
        [Conversation(**r) for r in records], tokenizer, max_length=max_length
    )
    tokenised = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    (work / "tokenised.json").write_text(json.dumps(tokenised), encoding="utf-8")
    lengths = sorted(len(e) for e in examples)
    return {
        "conversations": stats.conversations,
        "kept": stats.kept,
        "truncated": stats.truncated,
        "tokens": stats.tokens,
        "supervised": stats.supervised_tokens,
        "length_p10_p50_p90_max": [
            lengths[len(lengths) // 10],
            lengths[len(lengths) // 2],
            lengths[9 * len(lengths) // 10],
            lengths[-1],
        ],
        # token-weighted mean of n+1: attention FLOPs per token are 6 * layers * hidden * this
        "attn_ctx_per_token": sum(k * (k + 1) for k in lengths) / sum(lengths),
        "pad_id": tokenizer.pad_token_id,
    }


# ---------------------------------------------------------------------------------------------------
# child processes: one system per process, so peak RSS is that system's alone


class PeakRSS:
    """Peak resident memory of this process: ru_maxrss, cross-checked by polling (psutil)."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self.stop = psutil.Process(), 0, threading.Event()
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def result(self) -> float:
        self.stop.set()
        return max(self.peak, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2**30


def child_chattune(spec: dict[str, Any]) -> dict[str, Any]:
    from rich.console import Console

    from chattune.config import load_config
    from chattune.train import run
    from chattune.train.monitor import read_metrics

    rss = PeakRSS()
    work = Path(spec["work"])
    cfg = load_config(
        None,
        [
            f"model.name={spec['model']}",
            f"data.train_file={work / 'train.jsonl'}",
            "data.val_fraction=0",
            f"data.max_length={spec['max_length']}",
            f"train.method={'lora' if spec['lora'] else 'full'}",
            # the engines are compared at the same hyperparameters: recipe auto would add gradient
            # accumulation and rehearsal conversations that TRL's run does not have
            "train.recipe=manual",
            f"train.precision={spec.get('precision', 'bf16')}",
            f"train.batch_size={spec['batch_size']}",
            f"train.max_steps={spec['steps']}",
            f"train.learning_rate={spec['lr']}",
            "train.scheduler=constant",
            "train.warmup_steps=0",
            "train.max_grad_norm=1.0",
            "train.log_every=1",
            "eval.every_steps=null",
            f"output.dir={work / 'runs'}",
            "output.name=chattune",
            "output.overwrite=true",
            "output.tensorboard=false",
            "output.merge_lora=false",
            *spec.get("overrides", []),
        ],
    )
    run(cfg, console=Console(file=open(os.devnull, "w")))  # noqa: SIM115 - lives as long as the process
    steps = [m for m in read_metrics(cfg.run_dir / "metrics.jsonl") if m["split"] == "train"]
    return {
        "loss": [m["loss"] for m in steps],
        "seconds": [m["seconds_per_step"] for m in steps],
        "tokens": [m["tokens_per_second"] * m["seconds_per_step"] for m in steps],
        "supervised": [m["trained_tokens_per_second"] * m["seconds_per_step"] for m in steps],
        **_memory(rss),
    }


def _trl_trainer(
    spec: dict[str, Any], examples: list[dict[str, Any]], overrides: dict[str, Any], out_dir: Path
):  # type: ignore[no-untyped-def]
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from chattune.model import resolve_source

    path = resolve_source(spec["model"]).path
    gpu = spec["gpu"]
    settings: dict[str, Any] = {
        "output_dir": str(out_dir),
        "per_device_train_batch_size": spec["batch_size"],
        "max_length": spec["max_length"],
        "learning_rate": spec["lr"],
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "max_steps": spec["steps"],
        "max_grad_norm": 1.0,
        "weight_decay": 0.0,
        "optim": "adamw_torch_fused",
        "bf16": spec.get("precision", "bf16") == "bf16",
        "gradient_checkpointing": False,  # TRL's default is on: ~30% slower; off is its fastest setting
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": 42,
        "use_cpu": not gpu,
        "dataloader_pin_memory": gpu,
        "disable_tqdm": True,
    }
    args = SFTConfig(**(settings | overrides))
    peft_config = None
    if spec["lora"]:
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear", task_type="CAUSAL_LM"
        )
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def child_trl(spec: dict[str, Any]) -> dict[str, Any]:
    from transformers import TrainerCallback

    rss = PeakRSS()
    work = Path(spec["work"])
    examples = json.loads((work / "tokenised.json").read_text())
    trainer = _trl_trainer(spec, examples, TRL_CONFIGS[spec["config"]] | spec.get("extra", {}), work / "trl")
    counts: list[tuple[int, int]] = []  # (tokens, supervised) per collated batch, in order

    inner = trainer.data_collator

    def counting_collator(features):  # type: ignore[no-untyped-def]
        batch = inner(features)
        tokens = (
            int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
        )
        counts.append((tokens, int((batch["labels"][:, 1:] != -100).sum())))
        return batch

    trainer.data_collator = counting_collator
    ends: list[float] = []
    losses: list[float] = []

    class Timer(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            _sync(spec)
            ends.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):  # type: ignore[no-untyped-def]
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    trainer.add_callback(Timer())
    trainer.train()
    n = len(ends) - 1
    return {
        "loss": losses[:n],
        "seconds": [b - a for a, b in zip(ends, ends[1:], strict=False)],
        "tokens": [c[0] for c in counts[:n]],
        "supervised": [c[1] for c in counts[:n]],
        **_memory(rss),
    }


def child_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """The same objective (one fixed batch, both systems' loss code, fp32) and the matmul peaks."""
    import torch

    from chattune.train.validation import validation_metrics

    work = Path(spec["work"])
    examples = json.loads((work / "tokenised.json").read_text())[:8]
    trainer = _trl_trainer(spec | {"lora": False}, examples, {}, work / "probe")
    model = trainer.model.eval()
    device = next(model.parameters()).device
    with torch.no_grad():
        batch = {
            k: v.to(device) if hasattr(v, "to") else v for k, v in trainer.data_collator(examples).items()
        }
        trl_loss = float(trainer.compute_loss(model, batch))
    from chattune.data.tokenize import TokenizedExample

    tokenised = [TokenizedExample(e["input_ids"], e["labels"], i) for i, e in enumerate(examples)]
    ours = validation_metrics(
        model, tokenised, batch_size=8, max_length=spec["max_length"], pad_id=spec["pad_id"]
    )
    del trainer, model
    peaks = {
        str(dt).removeprefix("torch."): matmul_peak(dt, device) for dt in (torch.bfloat16, torch.float32)
    }
    return {"chattune_loss": ours["val_loss"], "trl_loss": trl_loss, "peak_tflops": peaks}


def matmul_peak(dtype, device, seconds: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    """Best sustained TFLOP/s of a square matmul loop: 2048 on CPU (larger is no faster there), 8192 on
    GPUs (smaller ones do not fill an H100)."""
    import torch

    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    best, deadline = 0.0, time.perf_counter() + seconds
    torch.matmul(a, b)
    while time.perf_counter() < deadline:
        _sync({"gpu": device.type == "cuda"})
        start, reps = time.perf_counter(), 4 if device.type == "cpu" else 50
        for _ in range(reps):
            torch.matmul(a, b)
        _sync({"gpu": device.type == "cuda"})
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start) / 1e12)
    return best


def _sync(spec: dict[str, Any]) -> None:
    if spec.get("gpu"):
        import torch

        torch.cuda.synchronize()


def _memory(rss: PeakRSS) -> dict[str, float]:
    import torch

    out = {"peak_rss_gb": rss.result()}
    if torch.cuda.is_available():
        out["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


# ---------------------------------------------------------------------------------------------------
# parent: orchestrate, summarise, check


def launch(kind: str, spec: dict[str, Any], work: Path) -> dict[str, Any] | None:
    spec_file, out = work / f"spec-{kind}.json", work / f"result-{kind}.json"
    spec_file.write_text(json.dumps(spec))
    out.unlink(missing_ok=True)
    env = os.environ | {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(HERE), "--child", kind, str(spec_file), str(out)],
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        message = (
            f"{kind} {spec.get('config', '')} run failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
        if kind != "trl":
            sys.exit(message)
        print(
            message + "\n(left out of the comparison)", flush=True
        )  # one TRL setting failing keeps the rest
        return None
    return json.loads(out.read_text())


def summarise(
    runs: list[dict[str, Any]], warmup: int, flops: dict[str, float], peak_tflops: float
) -> dict[str, float]:
    """Median over repeats of each figure; throughput over the steps after warm-up. Model FLOPs per
    second are over all tokens (body and attention) plus supervised tokens (head)."""

    def one(r: dict[str, Any]) -> dict[str, float]:
        sl = slice(warmup, None)
        secs, tok, sup = sum(r["seconds"][sl]), sum(r["tokens"][sl]), sum(r["supervised"][sl])
        model_flops = (flops["per_token"] * tok + flops["per_supervised"] * sup) / secs
        return {
            "supervised_tps": sup / secs,
            "tokens_tps": tok / secs,
            "s_per_step": secs / len(r["seconds"][sl]),
            "peak_rss_gb": r["peak_rss_gb"],
            "peak_gpu_gb": r.get("peak_gpu_gb", float("nan")),
            # a CPU without native bf16 measures ~0 TFLOP/s: no meaningful MFU then
            "mfu": model_flops / (peak_tflops * 1e12) if peak_tflops > 0.005 else float("nan"),
            "final_loss": r["loss"][-1],
            "mean_loss": statistics.fmean(r["loss"]),
        }

    per = [one(r) for r in runs]
    return {k: statistics.median(p[k] for p in per) for k in per[0]}


def check_curves(a: list[float], b: list[float]) -> tuple[bool, str]:
    """Paired by step: |mean difference| <= 4 standard errors + 3% of the loss (see the module docstring)."""
    d = [x - y for x, y in zip(a, b, strict=False)]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("inf")
    tol = 4 * se + 0.03 * statistics.fmean(b)
    mean = statistics.fmean(d)
    return abs(
        mean
    ) <= tol, f"mean loss difference {mean:+.4f} (tolerance {tol:.4f}: 4 SE {4 * se:.4f} + 3% of loss)"


def model_flops(lora: bool, attn_ctx_per_token: float, model: str) -> dict[str, float]:
    from transformers import AutoConfig

    from chattune.model import resolve_source

    c = AutoConfig.from_pretrained(resolve_source(model).path)
    d, layers, vocab = c.hidden_size, c.num_hidden_layers, c.vocab_size
    kv = c.num_key_value_heads * (d // c.num_attention_heads)
    per_layer = d * d * 2 + d * kv * 2 + 3 * d * c.intermediate_size  # q, o, k, v, gate/up/down
    body = layers * per_layer
    factor = 4 if lora else 6  # LoRA: no weight gradients for the frozen base
    return {
        "per_token": factor * body + 6 * layers * d * attn_ctx_per_token,
        "per_supervised": factor * vocab * d,
        "params": body + vocab * d,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=20)
    p.add_argument(
        "--warmup", type=int, default=2, help="untimed first steps (allocator warm-up, compilation)"
    )
    p.add_argument("--repeats", type=int, default=2, help="A/B rounds; figures are medians over rounds")
    p.add_argument(
        "--lora", action="store_true", help="LoRA r=16, alpha 32, dropout 0.05 on every linear layer"
    )
    p.add_argument("--gpu", action="store_true", help="run on CUDA; adds TRL + Liger kernels")
    p.add_argument(
        "--precision",
        choices=["bf16", "fp32"],
        default="bf16",
        help="both systems; fp32 on a CPU without native bf16 (no AVX512-BF16/AMX), where bf16 is emulated",
    )
    cpu_configs = [c for c in TRL_CONFIGS if c != "liger"]
    p.add_argument(
        "--trl", default=",".join(cpu_configs), help=f"TRL configurations, from {','.join(cpu_configs)}"
    )
    p.add_argument(
        "--model",
        default="embedded",
        help="model.name for both systems: the embedded SmolLM2-135M, a transformers folder or a .gguf file",
    )
    p.add_argument("--n", type=int, default=2000, help="conversations to generate")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=None, help="default 2e-5 full, 2e-4 LoRA")
    p.add_argument(
        "--chattune",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help=f"chattune config override, repeatable (default: {CHATTUNE_DEFAULT}; e.g. train.compile=false)",
    )
    p.add_argument("--json", type=Path, help="also write every run's raw figures here")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress lines show up in logs

    if a.child:
        kind, spec_file, out = a.child
        spec = json.loads(Path(spec_file).read_text())
        result = {"chattune": child_chattune, "trl": child_trl, "probe": child_probe}[kind](spec)
        Path(out).write_text(json.dumps(result))
        return

    import torch

    if a.gpu and not torch.cuda.is_available():
        sys.exit("--gpu: CUDA is not available")
    configs = [c for c in a.trl.split(",") if c and c != "none"]  # --trl none: chattune alone (ablations)
    if a.gpu:
        import importlib.util

        if importlib.util.find_spec("liger_kernel") is None:
            print("liger-kernel not installed (pip install liger-kernel): skipping TRL + Liger")
        else:
            configs.append("liger")
    unknown = set(configs) - set(TRL_CONFIGS)
    if unknown:
        sys.exit(f"--trl: unknown configuration(s) {sorted(unknown)}; choose from {sorted(TRL_CONFIGS)}")
    lr = a.lr or (2e-4 if a.lora else 2e-5)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        data = prepare_data(work, a.n, a.max_length, a.model)
        print(
            f"data: {data['kept']}/{data['conversations']} conversations, {data['tokens']:,} tokens, {data['supervised']:,} supervised, "
            f"{data['truncated']} cut at {a.max_length}; length p10/p50/p90/max {data['length_p10_p50_p90_max']}"
        )
        spec = {
            "work": str(work),
            "steps": a.steps,
            "batch_size": a.batch_size,
            "max_length": a.max_length,
            "lr": lr,
            "lora": a.lora,
            "gpu": a.gpu,
            "precision": a.precision,
            "model": a.model,
            "pad_id": data["pad_id"],
            "overrides": CHATTUNE_DEFAULT["lora" if a.lora else "full"] if a.chattune is None else a.chattune,
        }
        print(f"chattune overrides: {' '.join(spec['overrides']) or '(none)'}")
        probe = launch("probe", spec, work)
        assert probe is not None  # launch exits on a failed probe
        rel = abs(probe["chattune_loss"] - probe["trl_loss"]) / probe["trl_loss"]
        print(
            f"same objective: untrained loss on one fixed batch, fp32: chattune {probe['chattune_loss']:.5f}, TRL {probe['trl_loss']:.5f} (rel. diff {rel:.1e})"
        )
        if rel > 1e-3:
            sys.exit("FAIL: chattune and TRL compute different losses on the same batch")
        peaks = probe["peak_tflops"]
        print(f"matmul peak: bf16 {peaks['bfloat16']:.2f} TFLOP/s, fp32 {peaks['float32']:.2f} TFLOP/s")
        flops = model_flops(a.lora, data["attn_ctx_per_token"], a.model)

        runs: dict[str, list[dict[str, Any]]] = {}
        for r in range(a.repeats):
            # Round 1 screens every TRL configuration; later rounds rerun chattune and TRL's best only.
            trl_names = [f"trl-{c}" for c in configs if r == 0 or f"trl-{c}" in runs]
            if r > 0 and trl_names:
                trl_names = [
                    max(trl_names, key=lambda n: summarise(runs[n], a.warmup, flops, 1.0)["supervised_tps"])
                ]
            for name in ["chattune", *trl_names]:
                print(f"round {r + 1}/{a.repeats}: {name} ...", flush=True)
                kind, extra = (
                    ("chattune", {}) if name == "chattune" else ("trl", {"config": name.removeprefix("trl-")})
                )
                figures = launch(kind, spec | extra, work)
                if figures is not None:
                    runs.setdefault(name, []).append(figures)
    load = os.getloadavg()[0]  # includes this benchmark's own ~2

    peak = peaks["bfloat16" if a.precision == "bf16" else "float32"]  # both systems train at a.precision
    table = {name: summarise(rs, a.warmup, flops, peak) for name, rs in runs.items()}
    mode = "LoRA r=16" if a.lora else "full fine-tuning"
    print(
        f"\n{mode}, {a.steps} steps (first {a.warmup} untimed), batch {a.batch_size} x max length {a.max_length}, lr {lr:g}, median of {a.repeats}"
    )
    print(
        f"{'system':<18}{'sup tok/s':>10}{'tok/s':>9}{'s/step':>8}{'peak RSS':>10}{'MFU':>7}{'final loss':>11}{'mean loss':>10}"
    )
    for name, s in table.items():
        print(
            f"{name:<18}{s['supervised_tps']:>10.0f}{s['tokens_tps']:>9.0f}{s['s_per_step']:>8.2f}{s['peak_rss_gb']:>8.2f}GB"
            f"{s['mfu']:>7.1%}{s['final_loss']:>11.4f}{s['mean_loss']:>10.4f}"
            + (f"  GPU {s['peak_gpu_gb']:.1f}GB" if a.gpu else "")
        )
    if a.json:
        a.json.write_text(json.dumps({"data": data, "probe": probe, "runs": runs, "table": table}, indent=1))
    print(
        f"1-minute load average: {load_before:.2f} before the run, {load:.2f} after, on {os.cpu_count()} CPUs (timings mean little above ~1)"
    )
    if not configs:
        return
    best = max((n for n in table if n != "chattune"), key=lambda n: table[n]["supervised_tps"])
    ours, theirs = table["chattune"], table[best]
    print(
        f"\nchattune / TRL best ({best}): supervised tokens/s x{ours['supervised_tps'] / theirs['supervised_tps']:.2f}, "
        f"total tokens/s x{ours['tokens_tps'] / theirs['tokens_tps']:.2f}, peak RSS x{ours['peak_rss_gb'] / theirs['peak_rss_gb']:.2f}"
        f" (lowest TRL RSS: x{ours['peak_rss_gb'] / min(t['peak_rss_gb'] for n, t in table.items() if n != 'chattune'):.2f})"
    )
    print(
        f"MFU counts {flops['per_token'] / 1e6:.0f} MFLOP per token + {flops['per_supervised'] / 1e6:.0f} per supervised token, against the {a.precision} matmul peak"
    )
    failures = []
    for name in table:
        if name == "chattune":
            continue
        if name == "trl-grouped":
            # Length-grouped sampling draws batches of similar length, longest first, and per-token loss
            # falls with conversation length: over a few steps its curve is biased by *which* data it
            # saw, not by the math (the fixed-batch check above covers that). Shown, not judged.
            print(f"loss curves chattune vs {name}: length-ordered batches, not compared")
            continue
        ok, line = check_curves(
            [statistics.fmean(x) for x in zip(*(r["loss"] for r in runs["chattune"]), strict=False)],
            [statistics.fmean(x) for x in zip(*(r["loss"] for r in runs[name]), strict=False)],
        )
        print(f"loss curves chattune vs {name}: {line} -> {'ok' if ok else 'DISAGREE'}")
        if not ok:
            failures.append(name)
    if failures:
        sys.exit(f"FAIL: loss curves disagree beyond noise with {', '.join(failures)}")


if __name__ == "__main__":
    main()
