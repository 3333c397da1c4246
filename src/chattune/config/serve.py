"""The server's settings: one typed section, filled by `chattune serve`'s options."""

from __future__ import annotations

from pydantic import Field, SecretStr

from chattune.config.section import Section


class ServeConfig(Section):
    host: str = Field(
        "127.0.0.1",
        description="Interface to bind. Anything but loopback needs api_key: the server refuses to start "
        "without one.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port.")
    api_key: SecretStr | None = Field(
        None,
        description="Clients must send `Authorization: Bearer <key>`. None = no check (loopback only).",
    )
    max_new_tokens: int = Field(
        512, ge=1, description="Reply limit when a request sets none (always capped by the context left)."
    )
    max_batch: int = Field(
        16,
        ge=1,
        description="Requests decoded together in one forward pass. On 2 CPU cores the embedded model's "
        "throughput still grows at 16 (bench/bench_serve.py); more mostly adds latency per token.",
    )
    max_queue: int = Field(
        32,
        ge=0,
        description="Requests that may wait for a free batch slot; one more gets 429 with Retry-After.",
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Request bodies larger than this get 413.")
    retry_after_seconds: int = Field(
        1, ge=1, description="Retry-After sent with a 429 when the queue is full."
    )
