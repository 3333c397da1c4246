"""`chattune serve RUN_OR_MODEL`: an OpenAI-compatible chat server (FastAPI) on loopback.

    chattune serve runs/quickstart --port 8000
    curl http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \
         -d '{"model": "quickstart", "messages": [{"role": "user", "content": "How do I descale?"}]}'

Any OpenAI client works (`OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")`), streamed
(`"stream": true`, server-sent events) or not. Requests are answered one at a time: a small model on a
CPU gains nothing from interleaving generations, and it keeps latency figures honest.
Binds 127.0.0.1 unless --host says otherwise.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from chattune.generate import Generation, GenerationSettings

if TYPE_CHECKING:
    from fastapi import FastAPI


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # OpenAI clients send fields we do not use (n, user, ...)
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.9, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    seed: int | None = None
    stream: bool = False


def create_app(
    model: Any,
    tokenizer: Any,
    *,
    model_name: str,
    system_prompt: str | None = None,
    max_new_tokens: int = 512,
) -> FastAPI:
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI(title="chattune", version="1")
    lock = threading.Lock()
    created = int(time.time())

    def settings_for(req: ChatRequest) -> GenerationSettings:
        limit = req.max_completion_tokens or req.max_tokens or max_new_tokens
        return GenerationSettings(
            temperature=req.temperature, top_p=req.top_p, max_new_tokens=limit, seed=req.seed
        )

    def messages_for(req: ChatRequest) -> list[dict[str, str]]:
        msgs = [m.model_dump() for m in req.messages]
        if system_prompt and msgs[0]["role"] != "system":
            msgs.insert(0, {"role": "system", "content": system_prompt})
        return msgs

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": created, "owned_by": "chattune"}],
        }

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/chat/completions", response_model=None)
    def chat_completions(req: ChatRequest) -> Any:
        gen = Generation(model, tokenizer, messages_for(req), settings_for(req))
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        if not req.stream:
            with lock:
                for _ in gen:
                    pass
            r = gen.reply
            return {
                "id": ident,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": r.text},
                        "finish_reason": r.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": r.prompt_tokens,
                    "completion_tokens": r.completion_tokens,
                    "total_tokens": r.prompt_tokens + r.completion_tokens,
                },
            }

        def events() -> Iterator[str]:
            def chunk(delta: dict[str, str], finish: str | None = None) -> str:
                body = {
                    "id": ident,
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": model_name,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                }
                return f"data: {json.dumps(body)}\n\n"

            with lock:
                yield chunk({"role": "assistant", "content": ""})
                for piece in gen:
                    if piece:
                        yield chunk({"content": piece})
                yield chunk({}, gen.reply.finish_reason)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def serve(name_or_path: str, *, host: str = "127.0.0.1", port: int = 8000, max_new_tokens: int = 512) -> None:
    import uvicorn

    from chattune.chat import default_system_prompt
    from chattune.model import load_for_inference

    model, tokenizer, _ = load_for_inference(name_or_path)
    name = name_or_path.rstrip("/").split("/")[-1]
    app = create_app(
        model,
        tokenizer,
        model_name=name,
        system_prompt=default_system_prompt(name_or_path),
        max_new_tokens=max_new_tokens,
    )
    uvicorn.run(app, host=host, port=port, log_level="info")
