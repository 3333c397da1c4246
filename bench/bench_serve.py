"""Throughput and latency of `chattune serve` as concurrent clients grow, through the openai SDK.

    python bench/bench_serve.py                          # embedded model, 1/4/8/16 clients
    python bench/bench_serve.py --model runs/quickstart --levels 1 8 --requests 3 --max-tokens 64

Starts the server in this process on a free loopback port, then for each level runs that many clients,
each sending `--requests` streamed chat requests one after another (greedy, fixed length: the end-of-turn
token is not allowed to cut a reply short, so every level decodes the same number of tokens). Prints, per
level, aggregate completion tokens/s and p50/p95 of time to first token and of request latency, then the
ratio of 8 clients to 1 (target >= 3x on 2 cores). Every request must get a 200 or a 429.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

QUESTIONS = [
    "How do I descale my kettle?",
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Explain what a neural network is in two sentences.",
    "Give me three tips for better sleep.",
    "How does a bicycle stay upright?",
    "What should I pack for a weekend hike?",
    "Summarise the plot of Romeo and Juliet.",
]


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def one_client(base_url: str, model: str, index: int, requests: int, max_tokens: int) -> list[dict]:
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    out = []
    for r in range(requests):
        question = QUESTIONS[(index + r) % len(QUESTIONS)]
        start, first, tokens = time.perf_counter(), None, 0
        try:
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": question}],
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content and first is None:
                    first = time.perf_counter() - start
                if chunk.usage:
                    tokens = chunk.usage.completion_tokens
            out.append(dict(status=200, ttft=first, latency=time.perf_counter() - start, tokens=tokens))
        except openai.RateLimitError:
            out.append(dict(status=429))
        except openai.APIStatusError as e:
            out.append(dict(status=e.status_code))
    client.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client at each level")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--max-batch", type=int, default=None, help="server's max_batch (default: config)")
    args = parser.parse_args()

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout, for tests.helpers
    from tests.helpers import serve_in_thread

    from chattune.model import load_for_inference
    from chattune.serve import ServeConfig, create_app

    model, tokenizer, _ = load_for_inference(args.model)
    cfg = ServeConfig(**({"max_batch": args.max_batch} if args.max_batch else {}))
    app = create_app(model, tokenizer, model_name="bench", config=cfg)
    # fixed-length replies: without this a level whose questions end early would look faster
    app.state.engine.stop_ids = set()
    print(f"model {args.model}, torch threads {torch.get_num_threads()}, max_batch {cfg.max_batch}, "
          f"{args.requests} requests per client, {args.max_tokens} tokens each")  # fmt: skip
    rates: dict[int, float] = {}
    with serve_in_thread(app, timeout=120) as url:
        one_client(url, "bench", 0, 1, 4)  # warm-up
        print(
            f"{'clients':>7} {'tok/s':>8} {'ttft p50':>9} {'ttft p95':>9} {'lat p50':>8} {'lat p95':>8}  statuses"
        )
        for level in args.levels:
            start = time.perf_counter()
            with ThreadPoolExecutor(level) as pool:
                futures = [
                    pool.submit(one_client, url, "bench", i, args.requests, args.max_tokens)
                    for i in range(level)
                ]
                results = [r for f in futures for r in f.result()]
            wall = time.perf_counter() - start
            ok = [r for r in results if r["status"] == 200]
            statuses = {
                s: sum(r["status"] == s for r in results) for s in sorted({r["status"] for r in results})
            }
            rates[level] = sum(r["tokens"] for r in ok) / wall
            ttft = [r["ttft"] for r in ok if r["ttft"] is not None]
            lat = [r["latency"] for r in ok]
            print(
                f"{level:>7} {rates[level]:>8.1f} {percentile(ttft, 0.5):>9.2f} {percentile(ttft, 0.95):>9.2f} "
                f"{percentile(lat, 0.5):>8.2f} {percentile(lat, 0.95):>8.2f}  {statuses}",
                flush=True,
            )
            if set(statuses) - {200, 429}:
                print("FAIL: a request got neither 200 nor 429")
        health = __import__("httpx").get(url.removesuffix("/v1") + "/health", timeout=10).json()
        print(f"server after the run: {health}")
    if 1 in rates and 8 in rates:
        ratio = rates[8] / rates[1]
        print(f"8 clients / 1 client: {ratio:.2f}x aggregate tokens/s (target >= 3x)")


if __name__ == "__main__":
    main()
