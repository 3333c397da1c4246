"""The HTTP side: OpenAI routes, key check, body limit, OpenAI-shaped errors, metrics.

Requests are validated here and handed to the `Engine`, which decodes every admitted request in one
batch; text comes back through each job's queue and leaves as one JSON body or as server-sent events.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request  # at module level: FastAPI resolves route annotations here

from chattune.config.serve import ServeConfig
from chattune.generate import GenerationSettings
from chattune.serve.engine import Engine, Job, QueueFull
from chattune.serve.metrics import Metrics
from chattune.serve.protocol import APIError, ChatRequest, CompletionRequest, Sampling, error_body

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

OPEN_PATHS = ("/health",)  # load balancers probe this without a key
DISCONNECT_POLL_SECONDS = 0.5  # how soon a silent request (still queued) notices its client left


def create_app(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    model_name: str,
    system_prompt: str | None = None,
    config: ServeConfig | None = None,
) -> FastAPI:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response, StreamingResponse
    from starlette.exceptions import HTTPException

    cfg = config or ServeConfig()
    metrics = Metrics.create()
    context = int(getattr(model.config, "max_position_embeddings", 0) or 2048)
    created = int(time.time())

    def finished(job: Job) -> None:  # engine thread
        metrics.completion_tokens.inc(len(job.generated))
        if job.first_token_at is not None:
            metrics.ttft.observe(job.first_token_at - job.created)
        if job.finish_reason in ("stop", "length"):
            metrics.latency.observe(time.perf_counter() - job.created)

    engine = Engine(model, tokenizer, max_batch=cfg.max_batch, max_queue=cfg.max_queue, on_finish=finished)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine.start()
        yield
        engine.close()

    app = FastAPI(title="chattune", version="1", lifespan=lifespan)
    app.state.engine = engine
    key = cfg.api_key.get_secret_value() if cfg.api_key else None
    app.add_middleware(Guard, api_key=key, max_body=cfg.max_body_bytes)

    # -- errors: every 4xx and 5xx in OpenAI's shape ---------------------------------------------
    def reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(APIError)
    async def api_error(request: Request, e: APIError) -> JSONResponse:
        return reply(e.status, e.body(), e.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        errors = list(e.errors())
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            msg = f"the request body is not valid JSON: {first.get('ctx', {}).get('error', 'parse error')}"
            return reply(400, error_body(msg, code="invalid_json"))
        param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()) if p != 'body') or 'body'}: "
            + ("unsupported field" if err.get("type") == "extra_forbidden" else str(err.get("msg")))
            for err in errors
        )
        return reply(400, error_body(problems, param=param, code=str(first.get("type", "invalid"))))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        kind = "server_error" if e.status_code >= 500 else "invalid_request_error"
        message = str(e.detail)
        if e.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        elif e.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return reply(e.status_code, error_body(message, type=kind), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def crashed(request: Request, e: Exception) -> JSONResponse:
        return reply(500, error_body(f"internal error: {type(e).__name__}", type="server_error"))

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        metrics.requests.labels(request.url.path, str(response.status_code)).inc()
        return response

    # -- routes ------------------------------------------------------------------------------------
    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "active": engine.active, "queued": engine.queued, "max_batch": cfg.max_batch}

    @app.get("/metrics")
    def prometheus() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST

        metrics.queue_depth.set(engine.queued)
        metrics.active.set(engine.active)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "chattune"}],
        }

    def start(req: Sampling, prompt_ids: list[int], asked: int, param: str) -> Job:
        if req.model != model_name:
            raise APIError(
                404, f"model '{req.model}' is not served here; this server has '{model_name}'",
                param="model", code="model_not_found",
            )  # fmt: skip
        n = len(prompt_ids)
        if n >= context:
            raise APIError(
                400,
                f"the prompt is {n} tokens but the model's context is {context} tokens "
                "(prompt + reply): shorten the prompt",
                param=param,
                code="context_length_exceeded",
            )
        defaults = GenerationSettings()
        settings = GenerationSettings(
            temperature=defaults.temperature if req.temperature is None else req.temperature,
            top_p=defaults.top_p if req.top_p is None else req.top_p,
            max_new_tokens=min(asked, context - n),  # the context left after the prompt
            seed=req.seed,
        )
        job = Job(prompt_ids, settings, req.stop_strings(), loop=asyncio.get_running_loop())
        try:
            engine.submit(job)
        except QueueFull:
            raise APIError(
                429,
                f"the server is busy: {cfg.max_batch} requests decoding and {cfg.max_queue} waiting; "
                f"retry after {cfg.retry_after_seconds} s",
                type="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(cfg.retry_after_seconds)},
            ) from None
        metrics.prompt_tokens.inc(n)
        return job

    async def next_event(job: Job, request: Request) -> tuple[str, Any]:
        """The job's next event, or ("gone", None) after cancelling it once the client has left. Checked every
        DISCONNECT_POLL_SECONDS even while text flows: a server may not notice a closed socket on write."""
        while True:
            if time.monotonic() - job.checked > DISCONNECT_POLL_SECONDS:
                job.checked = time.monotonic()
                if await request.is_disconnected():
                    job.cancel()
                    return ("gone", None)
            try:
                return await asyncio.wait_for(job.events.get(), DISCONNECT_POLL_SECONDS)
            except TimeoutError:
                job.checked = 0.0

    def usage(job: Job) -> dict[str, int]:
        p, c = len(job.prompt_ids), len(job.generated)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def answer(request: Request, req: Sampling, job: Job, chat: bool) -> Any:
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        base = {"id": ident, "created": int(time.time()), "model": model_name}
        if not req.stream:
            try:
                while (event := await next_event(job, request))[0] == "text":
                    pass
            finally:
                job.cancel()  # no-op once finished; frees the slot if this handler was cancelled
            if event[0] == "gone":
                return Response(status_code=499)  # nginx's "client closed request": nobody reads it
            if event[0] == "error":
                raise APIError(500, f"generation failed: {event[1]}", type="server_error")
            text = job.text.strip() if chat else job.text
            choice: dict[str, Any] = {"index": 0, "finish_reason": job.finish_reason}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice.update(text=text, logprobs=None)
            kind = "chat.completion" if chat else "text_completion"
            return {**base, "object": kind, "choices": [choice], "usage": usage(job)}

        include_usage = bool(req.stream_options and req.stream_options.include_usage)

        def chunk(text: str | None, finish: str | None = None, first: bool = False) -> str:
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else {}
                if text:
                    delta["content"] = text
                choice = {"index": 0, "delta": delta, "finish_reason": finish}
                body = {**base, "object": "chat.completion.chunk", "choices": [choice]}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
                body = {**base, "object": "text_completion", "choices": [choice]}
            if include_usage:
                body["usage"] = None
            return f"data: {json.dumps(body)}\n\n"

        async def events() -> AsyncIterator[str]:
            try:
                if chat:
                    yield chunk(None, first=True)
                while (event := await next_event(job, request))[0] == "text":
                    yield chunk(event[1])
                if event[0] == "gone":
                    return
                if event[0] == "error":
                    body = error_body(f"generation failed: {event[1]}", type="server_error")
                    yield f"data: {json.dumps(body)}\n\n"
                    return
                yield chunk(None, job.finish_reason)
                if include_usage:
                    kind = "chat.completion.chunk" if chat else "text_completion"
                    tail = {**base, "object": kind, "choices": [], "usage": usage(job)}
                    yield f"data: {json.dumps(tail)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                job.cancel()  # the client went away mid-stream: stop decoding for it

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatRequest, request: Request) -> Any:
        messages = [m.as_template_message() for m in req.messages]
        if system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": system_prompt})
        encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        # a BatchEncoding in transformers 5, the list of ids before
        ids = _token_ids(encoded["input_ids"] if isinstance(encoded, Mapping) else encoded)
        asked = req.max_completion_tokens or req.max_tokens or cfg.max_new_tokens
        return await answer(request, req, start(req, ids, asked, "messages"), chat=True)

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest, request: Request) -> Any:
        ids = list(tokenizer(req.text())["input_ids"])
        if not ids:
            raise APIError(400, "the prompt is empty", param="prompt")
        asked = req.max_tokens or cfg.max_new_tokens
        return await answer(request, req, start(req, ids, asked, "prompt"), chat=False)

    return app


def _token_ids(ids: object) -> list[int]:
    """One tokenised prompt as a list of ints, checked."""
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        raise TypeError(f"the tokenizer gave {type(ids).__name__}, not a list of token ids")
    return list(ids)


class Guard:
    """ASGI middleware in front of everything: the key check, then the body limit.

    The body is read here, in full and counted, so a client that sends no Content-Length (chunked) meets
    the same limit; the app then reads the buffered copy.
    """

    def __init__(self, app: Any, *, api_key: str | None, max_body: int):
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        from fastapi.responses import JSONResponse

        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.api_key and scope["path"] not in OPEN_PATHS:
            auth = headers.get(b"authorization", b"").decode("latin-1")
            given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                why = "no API key" if not given else "wrong API key"
                msg = f"{why}: send 'Authorization: Bearer <key>' with the key the server was started with"
                body = error_body(msg, code="invalid_api_key")
                return await JSONResponse(body, status_code=401)(scope, receive, send)
        too_big = JSONResponse(
            error_body(f"request body over {self.max_body} bytes", code="request_too_large"), status_code=413
        )
        declared = headers.get(b"content-length", b"0")
        if not declared.isdigit():
            bad = JSONResponse(error_body("invalid Content-Length header"), status_code=400)
            return await bad(scope, receive, send)
        if int(declared) > self.max_body:
            return await too_big(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.max_body:
                return await too_big(scope, receive, send)
        content, replayed = b"".join(chunks), False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": content, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)
