"""Benchmark `chattune data prepare` end to end on generated conversations.

    python bench/bench_prepare.py                      # 100k conversations, the embedded model's tokenizer
    python bench/bench_prepare.py --count 20000 --tokenizer tiny
    python bench/bench_prepare.py --count 1000000      # the bounded-memory check (#15): peak RSS <= 2.5 GB

Generates N support conversations deterministically (seeded): 1-3 exchanges each, with ~5% exact and
~5% near duplicates, some HTML, PII and glossary variants, and a few junk/empty records. Then prepares
them with every default step on plus glossary, PII, language filter, IQR outliers and near-dup dedupe,
and prints conversations/s and peak memory (RSS) of the main process and of the largest worker.
Targets: >= 2,000 conversations/s on 2 cores; peak RSS <= 2.5 GB at 1,000,000 with near-dup on
(records stream through the stages, so memory should not grow with the count).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

PRODUCTS = [
    "K2 kettle",
    "Mini kettle",
    "Brewly app",
    "travel kettle",
    "smart base",
    "filter jug",
    "tea timer",
    "milk frother",
]
ACTIONS = [
    "reset",
    "descale",
    "pair",
    "update",
    "clean",
    "register",
    "return",
    "configure",
    "unlock",
    "repair",
    "move",
    "share",
]
DETAILS = [
    "after a power cut",
    "on a new phone",
    "for the first time",
    "without the app",
    "while travelling",
    "every week",
    "in hard water areas",
    "with my family",
    "on the office network",
    "after the last update",
    "at night",
    "quickly",
]
STEPS = [
    "open the app",
    "hold the power button",
    "wait for the blue ring",
    "tap Settings",
    "choose Network",
    "unplug the base",
    "fill to the MAX mark",
    "rinse twice",
    "press Confirm",
    "sign in again",
    "check the Wi-Fi band",
    "restart your phone",
    "remove the filter",
    "soak it overnight",
    "select Firmware",
    "scan the QR code",
]


def make_conversation(rng: random.Random, i: int) -> dict:
    msgs = (
        [{"role": "system", "content": "You are Brewly's support assistant."}] if rng.random() < 0.7 else []
    )
    for _ in range(rng.choice([1, 1, 2, 3])):
        q = f"How do I {rng.choice(ACTIONS)} my {rng.choice(PRODUCTS)} {rng.choice(DETAILS)}? (ticket {i})"
        if rng.random() < 0.05:
            q += " I think there is a bug when I log-in."
        if rng.random() < 0.03:
            q += f" Reach me at user{i}@example.com or +1 415 555 {1000 + i % 9000}."
        a = ", then ".join(rng.sample(STEPS, rng.randint(3, 7))).capitalize() + "."
        if rng.random() < 0.03:
            a = f"<p>{a}</p><ul><li>{rng.choice(STEPS)}</li></ul>"
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return {"messages": msgs}


def generate(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    recent: list[dict] = []
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            r = rng.random()
            if r < 0.05 and recent:  # exact duplicate
                rec = rng.choice(recent)
            elif r < 0.10 and recent:  # near duplicate: one extra word in the last answer
                rec = json.loads(json.dumps(rng.choice(recent)))
                rec["messages"][-1]["content"] += " Thanks!"
            elif r < 0.11:  # junk
                rec = {
                    "messages": [
                        {"role": "user", "content": "?"},
                        {"role": "assistant", "content": rng.choice(["", "...", "ok"])},
                    ]
                }
            else:
                rec = make_conversation(rng, i)
                recent = (recent + [rec])[-500:]
            fh.write(json.dumps(rec) + "\n")
            if i % 997 == 0:
                fh.write('{"messages": [broken\n')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--count", "--n", dest="count", type=int, default=100_000, help="conversations to generate"
    )
    ap.add_argument("--tokenizer", choices=["embedded", "tiny"], default="embedded")
    args = ap.parse_args()

    from rich.console import Console

    from chattune.config.prepare import PrepareConfig
    from chattune.data.prepare import run
    from chattune.data.report import print_summary

    if args.tokenizer == "embedded":
        from chattune.config import ModelConfig
        from chattune.model import load_tokenizer

        tokenizer = load_tokenizer(ModelConfig())
    else:
        sys.path.insert(0, str(Path(__file__).parents[1]))  # the checkout, for tests.helpers
        from tests.helpers import build_tiny_tokenizer

        tokenizer = build_tiny_tokenizer()

    print(f"load average before: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "bench.jsonl"
        t0 = time.perf_counter()
        generate(src, args.count)
        print(
            f"generated {args.count:,} conversations in {time.perf_counter() - t0:.1f}s ({src.stat().st_size / 1e6:.0f} MB)"
        )
        cfg = PrepareConfig.model_validate(
            {
                "sources": [{"path": str(src)}],
                "output_dir": str(Path(tmp) / "out"),
                "glossary": {"terms": {"error": ["bug", "glitch"], "sign in": ["log in", "log-in"]}},
                "language": {"keep": ["en"]},
                "outliers": {"method": "iqr"},
            }
        )
        console = Console()
        t0 = time.perf_counter()
        result = run(cfg, tokenizer, max_length=1024, console=console)
        seconds = time.perf_counter() - t0
        print_summary(result, console)
        print("seconds per stage:", result.stats["seconds"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Forked workers share the parent's pages copy-on-write; their RSS counts those shared pages too.
    worker_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"prepared {result.n_input:,} records in {seconds:.1f}s: {result.n_input / seconds:,.0f} conversations/s, "
        f"peak RSS {peak_mb:,.0f} MB (largest worker {worker_mb:,.0f} MB, mostly shared with the parent) "
        "(target >= 2,000/s on 2 cores)"
    )


if __name__ == "__main__":
    main()
