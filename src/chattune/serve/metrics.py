"""Prometheus metrics for `/metrics`: one registry per app, so two servers in a process never collide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# seconds; a CPU model's first token lands in tens of milliseconds to a few seconds under load
TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class Metrics:
    registry: Any
    requests: Any  # Counter{endpoint, status}
    prompt_tokens: Any
    completion_tokens: Any
    queue_depth: Any
    active: Any
    ttft: Any
    latency: Any

    @classmethod
    def create(cls) -> Metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = CollectorRegistry()
        return cls(
            registry=r,
            requests=Counter(
                "chattune_requests", "HTTP requests answered", ["endpoint", "status"], registry=r
            ),
            prompt_tokens=Counter("chattune_prompt_tokens", "Prompt tokens prefilled", registry=r),
            completion_tokens=Counter("chattune_completion_tokens", "Tokens generated", registry=r),
            queue_depth=Gauge("chattune_queue_depth", "Requests waiting for a batch slot", registry=r),
            active=Gauge("chattune_active_requests", "Requests decoding in the batch", registry=r),
            ttft=Histogram(
                "chattune_time_to_first_token_seconds",
                "From admission request to first token",
                buckets=TTFT_BUCKETS,
                registry=r,
            ),
            latency=Histogram(
                "chattune_request_latency_seconds",
                "From request to last token",
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))
