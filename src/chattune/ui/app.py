"""`chattune ui`: a local web dashboard. FastAPI serves a JSON API and a small static front end.

    chattune ui --runs runs                  # http://127.0.0.1:7860
    chattune ui --host 0.0.0.0 --token S3CRET  # off loopback a token is required; open /?token=S3CRET

Everything here is a thin layer over the functions the CLI calls: run state from train/status.py, configs
through config.load_config (what `chattune validate` uses), data sets through data/browse.py, replies
through generate.Generation (what `chat` and `serve` use), and jobs are `python -m chattune <verb>`
processes (ui/jobs.py), so closing the browser or restarting the dashboard loses nothing.
Live curves are pushed over server-sent events: the run's metrics.jsonl is tailed every half second.
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import json
import shlex
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from chattune.errors import ChattuneError, ConfigError
from chattune.generate import Generation, GenerationSettings
from chattune.train import status as run_status
from chattune.ui.jobs import Jobs, stop_pid

STATIC = Path(__file__).parent / "static"
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}
POLL_SECONDS = 0.5  # how often an open run page's metrics file is checked for new lines


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["train", "prepare", "eval", "export"]
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    config: str | None = None  # YAML text, for train and prepare
    model: str | None = None  # run directory or model, for eval and export
    args: str = ""  # extra command-line arguments


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[dict[str, str]] = Field(min_length=1)
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(0.9, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1, le=4096)
    repetition_penalty: float = Field(1.0, gt=0)
    seed: int | None = None


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(runs_dir: Path, *, token: str | None = None, cwd: Path | None = None) -> FastAPI:
    from fastapi.staticfiles import StaticFiles

    root = runs_dir.resolve()
    cwd = (cwd or Path.cwd()).resolve()
    jobs = Jobs(root / ".ui", cwd)
    models = ModelCache(max_models=2)
    app = FastAPI(title="chattune ui", version="1")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host header.
        host = (request.headers.get("host") or "").rsplit(":", 1)[0]
        if token is None and not is_loopback(host):
            return JSONResponse({"detail": f"host {host!r} refused: the dashboard answers loopback"}, 403)
        if token is not None:
            given = (
                request.query_params.get("token")
                or request.cookies.get("chattune_token")
                or request.headers.get("authorization", "").removeprefix("Bearer ")
            )
            if given != token:
                return JSONResponse({"detail": "token required: open /?token=..."}, 401)
        # A cross-site form or fetch cannot add a custom header without a CORS preflight we never allow.
        if request.method == "POST" and request.headers.get("x-chattune") != "1":
            return JSONResponse({"detail": "missing X-Chattune header"}, 403)
        response = await call_next(request)
        if token is not None and request.query_params.get("token") == token:
            response.set_cookie("chattune_token", token, httponly=True, samesite="strict")
        return response

    def run_path(rid: str) -> Path:
        path = (root / rid).resolve()
        if not path.is_relative_to(root) or not run_status.is_run_dir(path):
            raise HTTPException(404, f"no run {rid!r} under {root}")
        return path

    def local_path(raw: str) -> Path:
        path = Path(raw) if Path(raw).is_absolute() else cwd / raw
        path = path.resolve()
        if not (path.is_relative_to(root) or path.is_relative_to(cwd)):
            raise HTTPException(403, f"{raw}: outside the runs folder and the working directory")
        return path

    # ---- runs ----------------------------------------------------------------------------------------

    @app.get("/api/runs")
    def runs() -> dict[str, Any]:
        found = run_status.find_runs(root)
        return {
            "root": str(root),
            "runs": [{"id": str(p.relative_to(root)), **run_status.run_summary(p)} for p in found],
        }

    @app.get("/api/runs/{rid:path}/detail")
    def run_detail(rid: str) -> dict[str, Any]:
        path = run_path(rid)
        from chattune.train import checkpoint as ckpt

        checkpoints = []
        for c in ckpt.list_checkpoints(path / "checkpoints"):
            state = ckpt.load_state(c)
            size = sum(f.stat().st_size for f in c.iterdir() if f.is_file())
            checkpoints.append(
                {
                    "path": str(c),
                    "name": c.name,
                    "step": state.step,
                    "best_metric": state.best_metric,
                    "size_mb": round(size / 2**20, 1),
                }  # fmt: skip
            )
        config_text = (path / "config.yaml").read_text(encoding="utf-8")
        cfg = yaml.safe_load(config_text) or {}
        reports = {}
        if (path / "eval" / "report.html").is_file():
            reports["eval"] = f"/api/runs/{rid}/file/eval/report.html"
        prepare = ((cfg.get("data") or {}).get("prepare") or {}).get("output_dir")
        if prepare and (local := cwd / prepare / "report.html").is_file():
            reports["data"] = f"/api/file?path={local}"
        if (path / "loss.png").is_file():
            reports["loss.png"] = f"/api/runs/{rid}/file/loss.png"
        return {
            "id": rid,
            "path": str(path),
            **run_status.run_summary(path),
            "status": run_status.read_status(path),
            "config": config_text,
            "checkpoints": checkpoints,
            "final": str(path / "final") if (path / "final").is_dir() else None,
            "reports": reports,
        }

    @app.get("/api/runs/{rid:path}/metrics")
    def run_metrics(rid: str) -> list[dict[str, Any]]:
        return _read_records(run_path(rid) / "metrics.jsonl")

    @app.get("/api/runs/{rid:path}/events")
    async def run_events(rid: str, request: Request) -> StreamingResponse:
        """Server-sent events: `metrics` with new records as they are logged, `status` when it changes."""
        path = run_path(rid)

        async def events() -> AsyncIterator[str]:
            offset, last_state = 0, None
            metrics = path / "metrics.jsonl"
            while not await request.is_disconnected():
                size = metrics.stat().st_size if metrics.is_file() else 0
                if size < offset:  # rewritten by --resume: start over
                    offset = 0
                    yield "event: reset\ndata: {}\n\n"
                if size > offset:
                    with metrics.open("rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(size - offset)
                    complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits for the next poll
                    offset += len(complete)
                    records = [json.loads(ln) for ln in complete.decode().splitlines() if ln.strip()]
                    if records:
                        yield f"event: metrics\ndata: {json.dumps(records)}\n\n"
                state = run_status.read_status(path)["state"]
                if state != last_state:
                    last_state = state
                    yield f"event: status\ndata: {json.dumps({'state': state})}\n\n"
                await asyncio.sleep(POLL_SECONDS)

        return StreamingResponse(
            events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/api/runs/{rid:path}/file/{sub:path}")
    def run_file(rid: str, sub: str) -> FileResponse:
        path = run_path(rid)
        target = (path / sub).resolve()
        if not target.is_relative_to(path) or not target.is_file():
            raise HTTPException(404, f"no file {sub!r} in run {rid!r}")
        return FileResponse(target)

    @app.get("/api/file")
    def any_file(path: str) -> FileResponse:
        target = local_path(path)
        if not target.is_file():
            raise HTTPException(404, f"no file {path!r}")
        return FileResponse(target)

    @app.post("/api/runs/{rid:path}/stop")
    def run_stop(rid: str) -> dict[str, Any]:
        state = run_status.read_status(run_path(rid))
        if state["state"] != "running":
            raise HTTPException(409, f"run {rid!r} is {state['state']}, not running")
        stopped = stop_pid(int(state["pid"]), float(state["pid_started"]))
        return {"stopping": stopped}

    @app.post("/api/runs/{rid:path}/resume")
    def run_resume(rid: str) -> dict[str, Any]:
        path = run_path(rid)
        if run_status.read_status(path)["state"] == "running":
            raise HTTPException(409, f"run {rid!r} is still running")
        args = [
            str(path / "config.yaml"),
            f"output.dir={path.parent}",
            f"output.name={path.name}",
            "--resume",
        ]
        return jobs.start("train", args, run=rid)

    @app.get("/api/compare")
    def compare(ids: str) -> dict[str, Any]:
        wanted = [i for i in ids.split(",") if i]
        paths = [run_path(i) for i in wanted]
        configs = {
            i: yaml.safe_load((p / "config.yaml").read_text(encoding="utf-8")) or {}
            for i, p in zip(wanted, paths, strict=True)
        }
        return {
            "runs": [{"id": i, **run_status.run_summary(p)} for i, p in zip(wanted, paths, strict=True)],
            "metrics": {i: _read_records(p / "metrics.jsonl") for i, p in zip(wanted, paths, strict=True)},
            "config_diff": differing_keys(configs),
        }

    # ---- sweeps --------------------------------------------------------------------------------------

    @app.get("/api/sweeps")
    def sweeps() -> list[dict[str, Any]]:
        if not root.is_dir():
            return []
        return [
            {
                "id": p.name,
                "trials": len(_csv_rows(p / "trials.csv")),
                "has_summary": (p / "summary.html").is_file(),
            }
            for p in sorted(root.iterdir())
            if (p / "trials.csv").is_file() or (p / "sweep.yaml").is_file()
        ]

    @app.get("/api/sweeps/{sid}")
    def sweep(sid: str) -> dict[str, Any]:
        path = (root / sid).resolve()
        if not path.is_relative_to(root) or not path.is_dir():
            raise HTTPException(404, f"no sweep {sid!r}")
        best = path / "best.yaml"
        plots = sorted(p.name for p in (path / "plots").glob("*.png")) if (path / "plots").is_dir() else []
        return {
            "id": sid,
            "trials": _csv_rows(path / "trials.csv"),
            "plots": [f"/api/file?path={path / 'plots' / p}" for p in plots],
            "best_config": best.read_text(encoding="utf-8") if best.is_file() else None,
            "summary": f"/api/file?path={path / 'summary.html'}"
            if (path / "summary.html").is_file()
            else None,
        }

    # ---- configs and jobs ----------------------------------------------------------------------------

    @app.get("/api/template")
    def template() -> dict[str, str]:
        from chattune.config import RunConfig

        cfg = RunConfig()
        body = {"model": {"name": cfg.model.name}, "data": {"train_file": "data/train.jsonl"},
                "train": {"method": "lora", "max_steps": 50, "log_every": 1}, "output": {"dir": str(root)}}  # fmt: skip
        return {"yaml": yaml.safe_dump(body, sort_keys=False)}

    @app.post("/api/validate")
    def validate(body: dict[str, str]) -> dict[str, Any]:
        problems = validate_yaml(body.get("config", ""), jobs.config_dir, body.get("name") or "draft")
        return {"ok": not problems, "problems": problems}

    @app.get("/api/jobs")
    def job_list() -> list[dict[str, Any]]:
        return jobs.list()

    @app.post("/api/jobs")
    def job_start(req: JobRequest) -> Any:
        try:
            extra = shlex.split(req.args)
        except ValueError as e:
            raise HTTPException(422, f"arguments: {e}") from None
        if req.kind in ("train", "prepare"):
            name = req.name or "run"
            problems = validate_yaml(req.config or "", jobs.config_dir, name)
            if problems:
                return JSONResponse({"ok": False, "problems": problems}, 422)
            path = jobs.config_dir / f"{name}.yaml"
            path.write_text(req.config or "", encoding="utf-8")
            run = name if req.kind == "train" else None
            return jobs.start(req.kind, [str(path), *extra], run=run)
        if not req.model:
            raise HTTPException(422, f"{req.kind}: choose a run or model")
        model = str(run_path(req.model)) if (root / req.model / "config.yaml").is_file() else req.model
        return jobs.start(req.kind, [model, *extra])

    @app.get("/api/jobs/{ident}")
    def job(ident: str) -> dict[str, Any]:
        try:
            return {**jobs.get(ident), "log_tail": jobs.log_tail(ident)}
        except KeyError:
            raise HTTPException(404, f"no job {ident!r}") from None

    @app.post("/api/jobs/{ident}/stop")
    def job_stop(ident: str) -> dict[str, Any]:
        try:
            return jobs.stop(ident)
        except KeyError:
            raise HTTPException(404, f"no job {ident!r}") from None

    # ---- chat ----------------------------------------------------------------------------------------

    @app.get("/api/models")
    def model_choices() -> list[dict[str, str]]:
        """Runs with a final model, their checkpoints, and the embedded base model."""
        from chattune.train import checkpoint as ckpt

        out = []
        for p in run_status.find_runs(root):
            rid = str(p.relative_to(root))
            if (p / "final").is_dir():
                out.append({"label": f"{rid} (final)", "value": str(p)})
            out += [
                {"label": f"{rid} / {c.name}", "value": str(c)}
                for c in ckpt.list_checkpoints(p / "checkpoints")
            ]
        out.append({"label": "embedded base model (SmolLM2-135M-Instruct)", "value": "embedded"})
        return out

    @app.post("/api/chat")
    def chat(req: ChatRequest) -> StreamingResponse:
        target = req.model if req.model == "embedded" else str(local_path(req.model))
        settings = GenerationSettings(
            temperature=req.temperature, top_p=req.top_p, max_new_tokens=req.max_new_tokens,
            repetition_penalty=req.repetition_penalty, seed=req.seed,
        )  # fmt: skip

        def events() -> Iterator[str]:
            try:
                model, tokenizer, system = models.get(target)
                messages = list(req.messages)
                if system and messages[0].get("role") != "system":
                    messages.insert(0, {"role": "system", "content": system})
                gen = Generation(model, tokenizer, messages, settings)
                for piece in gen:
                    if piece:
                        yield f"data: {json.dumps({'piece': piece})}\n\n"
                r = gen.reply
                stats = {"completion_tokens": r.completion_tokens, "tokens_per_second": r.tokens_per_second,
                         "time_to_first_token": r.time_to_first_token, "finish_reason": r.finish_reason}  # fmt: skip
                yield f"data: {json.dumps({'done': True, 'stats': stats})}\n\n"
            except (ChattuneError, OSError, ValueError) as e:
                yield f"data: {json.dumps({'error': str(e)})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    # ---- data ----------------------------------------------------------------------------------------

    @app.get("/api/datasets")
    def datasets() -> list[str]:
        """Prepared data sets near the working directory (folders holding a ledger.jsonl)."""
        found = {p.parent for pattern in ("*/ledger.jsonl", "*/*/ledger.jsonl", "*/*/*/ledger.jsonl")
                 for p in cwd.glob(pattern)}  # fmt: skip
        return sorted(str(p.relative_to(cwd)) for p in found)

    @app.get("/api/data")
    def data(
        dir: str,
        source: str = "",
        status: str = "",
        reason: str = "",
        fix: str = "",
        offset: int = 0,
        limit: int = 200,
    ) -> dict[str, Any]:
        from chattune.data import browse

        entries = browse.ledger(local_path(dir))
        picked = browse.select(entries, source=source, status=status, reason=reason, fix=fix)
        return {"total": len(entries), "matched": len(picked), "facets": browse.facets(entries),
                "entries": picked[offset : offset + limit]}  # fmt: skip

    @app.get("/api/data/record")
    def data_record(dir: str, index: int) -> dict[str, Any]:
        from chattune.data import browse

        try:
            return browse.record_view(local_path(dir), index)
        except IndexError as e:
            raise HTTPException(404, str(e)) from None

    # ---- the page ------------------------------------------------------------------------------------

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


class ModelCache:
    """The last few models chatted with, loaded once by the same loader as `chat` and `serve`."""

    def __init__(self, max_models: int):
        self.max_models = max_models
        self._models: OrderedDict[str, tuple[Any, Any, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str) -> tuple[Any, Any, str | None]:
        from chattune.chat import default_system_prompt
        from chattune.model import load_for_inference

        with self._lock:
            if name not in self._models:
                model, tokenizer, _ = load_for_inference(name)
                self._models[name] = (model, tokenizer, default_system_prompt(name))
                while len(self._models) > self.max_models:
                    self._models.popitem(last=False)
            self._models.move_to_end(name)
            return self._models[name]


def validate_yaml(text: str, folder: Path, name: str) -> list[dict[str, Any]]:
    """Problems in a config as `chattune validate` reports them (config.load_config), each with the YAML
    line it points at, so the editor can mark it."""
    from chattune.config import load_config

    folder.mkdir(parents=True, exist_ok=True)
    draft = folder / f".{name}.draft.yaml"
    draft.write_text(text, encoding="utf-8")
    try:
        load_config(draft)
        return []
    except ConfigError as e:
        return [{"message": p, "line": _line_of(text, p.split(":", 1)[0])} for p in e.problems]
    finally:
        draft.unlink(missing_ok=True)


def _line_of(text: str, dotted: str) -> int | None:
    """1-based line of the key at a dotted path in YAML text (or of its closest existing parent)."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        return mark.line + 1 if mark else None
    line = None
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == part:
                line, node = key.start_mark.line + 1, value
                break
        else:
            break
    return line


def differing_keys(configs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Dotted keys whose values differ between configs, with each config's value."""
    flat = {name: _flatten(cfg) for name, cfg in configs.items()}
    keys = sorted({k for f in flat.values() for k in f})
    rows = []
    for key in keys:
        values = {name: f.get(key) for name, f in flat.items()}
        if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
            rows.append({"key": key, "values": values})
    return rows


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    return [json.loads(ln) for ln in text[: text.rfind("\n") + 1].splitlines() if ln.strip()]


def _csv_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def serve_ui(runs_dir: Path, *, host: str = "127.0.0.1", port: int = 7860, token: str | None = None) -> None:
    import uvicorn

    if not is_loopback(host) and not token:
        raise ChattuneError(
            f"--host {host} exposes the dashboard (which starts processes) to the network: pass --token"
        )
    print(f"chattune ui: http://{host}:{port}/" + (f"?token={token}" if token else ""), flush=True)
    uvicorn.run(create_app(runs_dir, token=token), host=host, port=port, log_level="warning")
