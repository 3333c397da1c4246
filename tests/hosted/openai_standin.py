"""A local stand-in for the parts of OpenAI's API that chattune's openai backend uses.

    with StandIn() as api:          # FastAPI + uvicorn on 127.0.0.1, a free port, in a thread
        api.base_url                # http://127.0.0.1:PORT/v1
        api.rate_limit_next = 2     # the next two requests get 429 with retry-after-ms

Shapes follow the openai SDK's types (FileObject, FineTuningJob, FineTuningJobEvent,
FineTuningJobCheckpoint, ChatCompletion / ChatCompletionChunk) and the API reference: list endpoints
answer {"object": "list", "data": [...], "has_more": ...}, events newest first, paged with `after`.
A job moves one status per retrieve: validating_files -> queued -> running (one metrics event per
retrieve) -> succeeded, or -> failed at validation when a training example contains FAIL_VALIDATION
(reported, as the API does, by its example number in the uploaded file). Errors use the API's body:
{"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

FAIL_MARKER = "FAIL_VALIDATION"
BASE_MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14")


def _error(
    status: int, message: str, code: str | None, *, type_: str = "invalid_request_error", headers=None
):
    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _page(items: list[dict[str, Any]], after: str | None, limit: int) -> dict[str, Any]:
    if after is not None:
        ids = [i["id"] for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    data = items[:limit]
    return {
        "object": "list",
        "data": data,
        "has_more": len(items) > limit,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


class StandIn:
    def __init__(self, *, steps: int = 4):
        self.steps = steps
        self.files: dict[str, dict[str, Any]] = {}
        self.contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, int]] = []  # method, path, status
        self.rate_limit_next = 0  # answer the next N requests with 429
        self.server_error_next = 0  # answer the next N requests with 500
        self.lose_upload_answer = 0  # store the next N uploads but answer 502, as a failing proxy would
        self.chat_requests: list[dict[str, Any]] = []
        self._n = 0
        self.app = self._build()

    # ---- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> StandIn:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # do not wait for the SDK's keep-alive connections
        self.thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:06d}"

    def count(self, method: str, path: str, status: int | None = None) -> int:
        return sum(1 for m, p, s in self.requests if m == method and p == path and status in (None, s))

    # ---- jobs ---------------------------------------------------------------------------------------
    def _event(
        self, job_id: str, message: str, *, level: str = "info", data: Any = None, type_: str = "message"
    ):
        ev = {
            "id": self._id("ftevent"),
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "data": data,
            "type": type_,
        }
        self.events[job_id].insert(0, ev)  # newest first

    def _advance(self, job: dict[str, Any]) -> None:
        """One status step per retrieve, with the events the API writes on the way."""
        jid, status = job["id"], job["status"]
        if status == "validating_files":
            content = self.contents[job["training_file"]].decode()
            bad = next((i for i, ln in enumerate(content.splitlines(), 1) if FAIL_MARKER in ln), None)
            if bad is not None:
                job.update(status="failed", finished_at=int(time.time()))
                job["error"] = {
                    "code": "invalid_training_file",
                    "param": "training_file",
                    "message": f"The job failed due to an invalid training file. Invalid file format. "
                    f"Example {bad}: the assistant message is not valid.",
                }
                self._event(jid, "Training file validation failed", level="error")
                return
            job["status"] = "queued"
            self._event(jid, "Files validated, moving job to queued state")
        elif status == "queued":
            job["status"] = "running"
            job["_step"] = 0
            self._event(jid, "Fine-tuning job started")
        elif status == "running":
            job["_step"] += 1
            step = job["_step"]
            data = {
                "step": step,
                "train_loss": 2.0 / step,
                "train_mean_token_accuracy": 0.5 + 0.1 * step,
                "total_steps": self.steps,
            }
            if job.get("validation_file"):
                data.update(valid_loss=2.2 / step, valid_mean_token_accuracy=0.45 + 0.1 * step)
            self._event(
                jid,
                f"Step {step}/{self.steps}: training loss={data['train_loss']:.4f}",
                data=data,
                type_="metrics",
            )
            if step >= self.steps:
                model = f"ft:{job['model']}:org::{jid[-6:]}"
                csv_rows = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
                csv_rows += [
                    f"{s},{2.0 / s},{0.5 + 0.1 * s},{2.2 / s},{0.45 + 0.1 * s}" for s in range(1, step + 1)
                ]
                result = self._store("step_metrics.csv", "\n".join(csv_rows).encode(), "fine-tune-results")
                job.update(
                    status="succeeded",
                    fine_tuned_model=model,
                    finished_at=int(time.time()),
                    trained_tokens=1234,
                    result_files=[result["id"]],
                )
                self._event(jid, f"New fine-tuned model created: {model}")
                self._event(jid, "The job has successfully completed")

    def _store(self, filename: str, content: bytes, purpose: str) -> dict[str, Any]:
        obj = {
            "id": self._id("file"),
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        self.files[obj["id"]] = obj
        self.contents[obj["id"]] = content
        return obj

    @staticmethod
    def _public(job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    # ---- the app ------------------------------------------------------------------------------------
    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def faults(request: Request, call_next):  # type: ignore[no-untyped-def]
            if self.rate_limit_next > 0:
                self.rate_limit_next -= 1
                response = _error(
                    429,
                    "Rate limit reached for requests. Please try again in 1ms.",
                    "rate_limit_exceeded",
                    type_="requests",
                    headers={"retry-after-ms": "1"},
                )
            elif self.server_error_next > 0:
                self.server_error_next -= 1
                response = _error(
                    500, "The server had an error while processing your request.", None, type_="server_error"
                )
            else:
                response = await call_next(request)
            self.requests.append((request.method, request.url.path, response.status_code))
            return response

        @app.post("/v1/files")
        async def create_file(file: UploadFile, request: Request):  # type: ignore[no-untyped-def]
            form = await request.form()
            if form.get("purpose") != "fine-tune":
                return _error(400, "purpose must be fine-tune", "invalid_purpose")
            obj = self._store(file.filename or "upload.jsonl", await file.read(), "fine-tune")
            if self.lose_upload_answer > 0:
                self.lose_upload_answer -= 1
                return _error(502, "Bad gateway", None, type_="server_error")
            return obj

        @app.get("/v1/files")
        def list_files(purpose: str | None = None, after: str | None = None, limit: int = 10000):  # type: ignore[no-untyped-def]
            items = [f for f in reversed(self.files.values()) if purpose in (None, f["purpose"])]
            return _page(items, after, limit)

        @app.get("/v1/files/{file_id}")
        def retrieve_file(file_id: str):  # type: ignore[no-untyped-def]
            if file_id not in self.files:
                return _error(404, f"No such File object: {file_id}", None)
            return self.files[file_id]

        @app.get("/v1/files/{file_id}/content")
        def file_content(file_id: str):  # type: ignore[no-untyped-def]
            if file_id not in self.contents:
                return _error(404, f"No such File object: {file_id}", None)
            return PlainTextResponse(self.contents[file_id].decode())

        @app.post("/v1/fine_tuning/jobs")
        async def create_job(request: Request):  # type: ignore[no-untyped-def]
            body = await request.json()
            if body.get("model") not in BASE_MODELS:
                return _error(
                    400,
                    f"Model {body.get('model')} is not available for fine-tuning or does not exist.",
                    "model_not_available",
                )
            for key in ("training_file", "validation_file"):
                if body.get(key) and body[key] not in self.files:
                    return _error(400, f"invalid {key}: {body[key]}", "invalid_file")
            method = body.get("method") or {"type": "supervised", "supervised": {}}
            hyper = (method.get(method["type"]) or {}).get("hyperparameters") or {}
            job = {
                "id": self._id("ftjob"),
                "object": "fine_tuning.job",
                "created_at": int(time.time()),
                "error": None,
                "fine_tuned_model": None,
                "finished_at": None,
                "hyperparameters": {
                    k: hyper.get(k, "auto") for k in ("n_epochs", "batch_size", "learning_rate_multiplier")
                },
                "model": body["model"],
                "organization_id": "org-standin",
                "result_files": [],
                "seed": body.get("seed", 0),
                "status": "validating_files",
                "trained_tokens": None,
                "training_file": body["training_file"],
                "validation_file": body.get("validation_file"),
                "metadata": body.get("metadata"),
                "method": method,
                "suffix": body.get("suffix"),
            }
            self.jobs[job["id"]] = job
            self.events[job["id"]] = []
            self._event(job["id"], f"Validating training file: {body['training_file']}")
            return self._public(job)

        @app.get("/v1/fine_tuning/jobs")
        def list_jobs(request: Request, after: str | None = None, limit: int = 20):  # type: ignore[no-untyped-def]
            wanted = {
                k[len("metadata[") : -1]: v
                for k, v in request.query_params.items()
                if k.startswith("metadata[")
            }
            items = [
                self._public(j)
                for j in reversed(self.jobs.values())
                if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())
            ]
            return _page(items, after, limit)

        @app.get("/v1/fine_tuning/jobs/{job_id}")
        def retrieve_job(job_id: str):  # type: ignore[no-untyped-def]
            if job_id not in self.jobs:
                return _error(404, f"Could not find fine-tune: {job_id}", "fine_tune_not_found")
            self._advance(self.jobs[job_id])
            return self._public(self.jobs[job_id])

        @app.get("/v1/fine_tuning/jobs/{job_id}/events")
        def list_events(job_id: str, after: str | None = None, limit: int = 20):  # type: ignore[no-untyped-def]
            return _page(self.events[job_id], after, limit)

        @app.post("/v1/fine_tuning/jobs/{job_id}/cancel")
        def cancel_job(job_id: str):  # type: ignore[no-untyped-def]
            job = self.jobs[job_id]
            if job["status"] not in ("validating_files", "queued", "running"):
                return _error(400, f"Job {job_id} has already {job['status']}", "invalid_request")
            job.update(status="cancelled", finished_at=int(time.time()))
            self._event(job_id, "Fine-tuning job cancelled")
            return self._public(job)

        @app.get("/v1/fine_tuning/jobs/{job_id}/checkpoints")
        def checkpoints(job_id: str, after: str | None = None, limit: int = 10):  # type: ignore[no-untyped-def]
            job = self.jobs[job_id]
            items = []
            if job["status"] == "succeeded":
                for step in range(self.steps, 0, -1)[:3]:
                    items.append(
                        {
                            "id": f"ftckpt-{job_id}-{step}",
                            "object": "fine_tuning.job.checkpoint",
                            "created_at": int(time.time()),
                            "fine_tuned_model_checkpoint": f"{job['fine_tuned_model']}:ckpt-step-{step}",
                            "fine_tuning_job_id": job_id,
                            "metrics": {
                                "step": float(step),
                                "train_loss": 2.0 / step,
                                "valid_loss": 2.2 / step,
                            },
                            "step_number": step,
                        }
                    )
            return _page(items, after, limit)

        @app.post("/v1/chat/completions")
        async def chat(request: Request):  # type: ignore[no-untyped-def]
            body = await request.json()
            self.chat_requests.append(body)
            model = body["model"]
            tuned = {j["fine_tuned_model"] for j in self.jobs.values() if j["fine_tuned_model"]}
            if model not in BASE_MODELS and model not in tuned:
                return _error(
                    404,
                    f"The model `{model}` does not exist or you do not have access to it.",
                    "model_not_found",
                )
            question = body["messages"][-1]["content"]
            answer = (
                f"Tuned: thanks for asking about {question}"
                if model in tuned
                else "I am a general assistant."
            )
            cid, created = self._id("chatcmpl"), int(time.time())
            usage = {
                "prompt_tokens": 10,
                "completion_tokens": len(answer.split()),
                "total_tokens": 10 + len(answer.split()),
            }
            if not body.get("stream"):
                return {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": usage,
                }

            def chunk(delta: dict[str, Any], finish: str | None, with_usage: bool = False) -> str:
                c = {
                    "id": cid,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": []
                    if with_usage
                    else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                }
                if with_usage:
                    c["usage"] = usage
                return f"data: {json.dumps(c)}\n\n"

            def stream():  # type: ignore[no-untyped-def]
                yield chunk({"role": "assistant", "content": ""}, None)
                for word in answer.split(" "):
                    yield chunk({"content": word + " "}, None)
                yield chunk({}, "stop")
                if (body.get("stream_options") or {}).get("include_usage"):
                    yield chunk({}, None, with_usage=True)
                yield "data: [DONE]\n\n"

            return StreamingResponse(stream(), media_type="text/event-stream")

        return app
