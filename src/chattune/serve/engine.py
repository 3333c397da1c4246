"""Continuous batching for the server: every admitted request decodes in one shared forward pass.

One background thread owns the model. Each loop it (1) drops rows whose client went away, (2) admits
waiting requests into free slots -- each prompt is prefilled alone, then its KV cache is left-padded into
the running batch -- and (3) runs one decode step for all rows at once, sampling each row with its own
temperature, top-p and seeded generator. A row leaves the batch the step it finishes, and a newcomer joins
the next step, as in llama.cpp's server, TGI and vLLM, so a long reply never holds up a short one.

Why not transformers' ContinuousBatchingManager (`generate_batch`): it fixes greedy-vs-sampling and the
seed per manager, not per request, and runs paged attention sized for a GPU; a CPU server answering
`temperature=0` next to `temperature=0.8, seed=7` needs both per request. Measured on 2 cores in the
report of #16 (bench/bench_serve.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from chattune.data.tokenize import decode_text
from chattune.generate import GenerationSettings, end_of_turn_ids

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """Every slot is busy and the waiting line is at its limit."""


@dataclass
class Job:
    """One request: what to generate, and where its text goes (an asyncio queue in the server's loop)."""

    prompt_ids: list[int]
    settings: GenerationSettings
    stop: tuple[str, ...]
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    created: float = field(default_factory=time.perf_counter)
    cancelled: threading.Event = field(default_factory=threading.Event)
    checked: float = field(default_factory=time.monotonic)  # when the server last looked for a disconnect
    # filled by the engine thread
    generated: list[int] = field(default_factory=list)
    text: str = ""
    sent: int = 0  # characters of `text` already handed out
    first_token_at: float | None = None
    finish_reason: str | None = None
    generator: torch.Generator | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def _emit(self, kind: str, value: Any = None) -> None:
        with contextlib.suppress(RuntimeError):  # the server's loop has closed: nobody listens any more
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


@dataclass
class Batch:
    """The running rows: a left-padded KV cache, its attention mask, and each row's next input."""

    jobs: list[Job]
    cache: Any  # transformers DynamicCache, batch dimension = rows
    mask: torch.Tensor  # [rows, cached length], 0 where a row is padded on the left
    next_ids: torch.Tensor  # [rows] the token each row feeds next
    positions: torch.Tensor  # [rows] that token's position in its own sequence


class Engine:
    """Owns the model in one thread; `submit` from any thread, results arrive on `job.events`."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_batch: int,
        max_queue: int,
        on_finish: Any = None,  # called in the engine thread with each finished Job (metrics)
    ):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.on_finish = on_finish
        self.stop_ids = end_of_turn_ids(model, tokenizer)
        self.cache_arg = _cache_argument(model)
        self.waiting: collections.deque[Job] = collections.deque()
        self.batch: Batch | None = None
        self.wake = threading.Condition()
        self.closing = False
        self.thread: threading.Thread | None = None

    # -- called from the server ------------------------------------------------------------------
    @property
    def active(self) -> int:
        batch = self.batch
        return len(batch.jobs) if batch else 0

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def submit(self, job: Job) -> None:
        with self.wake:
            # free slots admit at once; beyond them at most max_queue requests wait
            if len(self.waiting) >= self.max_queue + max(0, self.max_batch - self.active):
                raise QueueFull
            self.waiting.append(job)
            self.wake.notify()

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="chattune-engine", daemon=True)
        self.thread.start()

    def close(self) -> None:
        with self.wake:
            self.closing = True
            self.wake.notify()
        if self.thread:
            self.thread.join(timeout=30)

    # -- the engine thread -----------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self.wake:
                    while not self.closing and not self.waiting and not self.batch:
                        self.wake.wait()
                    if self.closing:
                        break
                try:
                    self._drop_cancelled()
                    self._admit()
                    if self.batch:
                        self._decode_step()
                except Exception as e:  # a failed step fails its rows, never the server
                    log.exception("generation step failed")
                    for job in self.batch.jobs if self.batch else []:
                        self._finish(job, "error", error=str(e))
                    self.batch = None
        for job in [*(self.batch.jobs if self.batch else []), *self.waiting]:
            self._finish(job, "error", error="server shutting down")

    def _drop_cancelled(self) -> None:
        with self.wake:
            for job in [j for j in self.waiting if j.cancelled.is_set()]:
                self.waiting.remove(job)
                self._finish(job, "cancelled")
        if self.batch:
            gone = [i for i, j in enumerate(self.batch.jobs) if j.cancelled.is_set()]
            for i in gone:
                self._finish(self.batch.jobs[i], "cancelled")
            self._remove_rows(gone)

    def _admit(self) -> None:
        while self.active < self.max_batch:
            with self.wake:
                if not self.waiting:
                    return
                job = self.waiting.popleft()
            try:
                self._prefill(job)
            except Exception as e:  # this prompt failed (out of memory, ...); the others go on
                log.exception("prefill failed")
                self._finish(job, "error", error=str(e))

    def _prefill(self, job: Job) -> None:
        import torch
        from transformers import DynamicCache

        device = self.model.device
        job.generator = torch.Generator(device=device)
        if job.settings.seed is not None:
            job.generator.manual_seed(job.settings.seed)
        else:
            job.generator.seed()
        ids = torch.tensor([job.prompt_ids], device=device)
        cache = DynamicCache(config=self.model.config)
        # logits for the last position only: the whole prompt's would cost prompt x vocabulary floats
        logits = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{self.cache_arg: cache})
        logits = logits.logits[:, -1]
        token = self._sample(logits, [job])[0]
        if self._advance(job, int(token)):
            return
        n = len(job.prompt_ids)
        row = Batch(
            jobs=[job],
            cache=cache,
            mask=torch.ones(1, n, dtype=torch.long, device=device),
            next_ids=token.view(1),
            positions=torch.tensor([n], device=device),
        )
        self.batch = row if self.batch is None else _merge(self.batch, row)

    def _decode_step(self) -> None:
        import torch

        b = self.batch
        assert b is not None
        b.mask = torch.cat([b.mask, torch.ones(len(b.jobs), 1, dtype=b.mask.dtype, device=b.mask.device)], 1)
        logits = self.model(
            input_ids=b.next_ids[:, None],
            attention_mask=b.mask,
            position_ids=b.positions[:, None],
            use_cache=True,
            **{self.cache_arg: b.cache},
        ).logits[:, -1]
        tokens = self._sample(logits, b.jobs)
        b.next_ids, b.positions = tokens, b.positions + 1
        done = [
            i for i, (job, t) in enumerate(zip(b.jobs, tokens.tolist(), strict=True)) if self._advance(job, t)
        ]
        self._remove_rows(done)

    def _sample(self, logits: torch.Tensor, jobs: list[Job]) -> torch.Tensor:
        """One token per row: argmax where temperature is 0, else top-p sampling with the row's generator."""
        import torch

        out = logits.argmax(-1)
        for i, job in enumerate(jobs):
            s = job.settings
            if s.temperature <= 0:
                continue
            probs = torch.softmax(logits[i].float() / s.temperature, -1)
            if s.top_p < 1:
                sorted_p, order = probs.sort(descending=True)
                keep = sorted_p.cumsum(-1) - sorted_p < s.top_p  # always keeps the most likely token
                probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
            out[i] = torch.multinomial(probs, 1, generator=job.generator)[0]
        return out

    def _advance(self, job: Job, token: int) -> bool:
        """Record a sampled token, hand out the text that is now certain; True when the job is done."""
        if job.first_token_at is None:
            job.first_token_at = time.perf_counter()
        if token in self.stop_ids:
            return self._finish(job, "stop")
        job.generated.append(token)
        text = decode_text(self.tokenizer, job.generated, skip_special_tokens=True)
        for s in job.stop:
            if (at := text.find(s)) >= 0:
                job.text = text[:at]
                return self._finish(job, "stop")
        job.text = text
        if len(job.generated) >= job.settings.max_new_tokens:
            return self._finish(job, "length")
        # hold back a partial UTF-8 character and anything that may be the start of a stop string
        hold = max((len(s) - 1 for s in job.stop), default=0)
        ready = len(text) - hold - (1 if text.endswith("\ufffd") else 0)
        if ready > job.sent:
            job._emit("text", text[job.sent : ready])
            job.sent = ready
        return False

    def _finish(self, job: Job, reason: str, error: str | None = None) -> bool:
        job.finish_reason = reason
        if reason in ("stop", "length") and len(job.text) > job.sent:
            job._emit("text", job.text[job.sent :])
            job.sent = len(job.text)
        job._emit("error" if error else "done", error or reason)
        if self.on_finish:
            self.on_finish(job)
        return True

    def _remove_rows(self, rows: list[int]) -> None:
        import torch

        b = self.batch
        if not rows or b is None:
            return
        keep = [i for i in range(len(b.jobs)) if i not in set(rows)]
        if not keep:
            self.batch = None
            return
        idx = torch.tensor(keep, device=b.mask.device)
        b.jobs = [b.jobs[i] for i in keep]
        b.mask, b.next_ids, b.positions = b.mask[idx], b.next_ids[idx], b.positions[idx]
        # columns that are padding in every remaining row cost attention time and hold memory: cut them
        start = int((b.mask.sum(0) > 0).nonzero()[0])
        b.mask = b.mask[:, start:]
        for layer in b.cache.layers:
            layer.keys = layer.keys[idx, :, start:]
            layer.values = layer.values[idx, :, start:]


def _cache_argument(model: Any) -> str:
    """transformers 5.25 renamed `past_key_values` to `cache` (the old name warns until 5.40)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def _merge(batch: Batch, row: Batch) -> Batch:
    """Append `row` to `batch`, left-padding whichever cache is shorter so the columns line up."""
    import torch
    import torch.nn.functional as F

    a_len, b_len = batch.mask.shape[1], row.mask.shape[1]
    width = max(a_len, b_len)

    def pad(t: torch.Tensor, by: int, dim_from_end: int) -> torch.Tensor:
        if by == 0:
            return t
        spec = [0, 0] * (dim_from_end - 1) + [by, 0]
        return F.pad(t, spec)

    for mine, theirs in zip(batch.cache.layers, row.cache.layers, strict=True):
        mine.keys = torch.cat([pad(mine.keys, width - a_len, 2), pad(theirs.keys, width - b_len, 2)])
        mine.values = torch.cat([pad(mine.values, width - a_len, 2), pad(theirs.values, width - b_len, 2)])
    batch.mask = torch.cat([pad(batch.mask, width - a_len, 1), pad(row.mask, width - b_len, 1)])
    batch.jobs = batch.jobs + row.jobs
    batch.next_ids = torch.cat([batch.next_ids, row.next_ids])
    batch.positions = torch.cat([batch.positions, row.positions])
    return batch
