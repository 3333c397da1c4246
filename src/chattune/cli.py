"""The `chattune` command: a thin table of commands. Each parses, loads config, and calls one stage.

    chattune <verb> CONFIG.yaml [section.key=value ...]

Heavy libraries (torch, transformers) are imported inside the commands so `chattune --help` is instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from chattune.errors import ChattuneError

app = typer.Typer(
    name="chattune",
    help="From raw conversations to a fine-tuned chat model you can measure and serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Prepare and inspect training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

P = ParamSpec("P")
R = TypeVar("R")

ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).", show_default=False)]
OverridesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Dotted overrides applied before validation, e.g. train.learning_rate=1e-4"),
]


def reports_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn chattune's own errors into a red message and exit status 2 (or the error's own
    `exit_code`: 128 + the signal for a run stopped by SIGTERM/SIGINT), with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ChattuneError as e:
            err_console.print(f"error: {e}", style="bold red", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(getattr(e, "exit_code", 2)) from None

    return wrapper


@app.command()
@reports_errors
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Continue from the run's latest valid checkpoint (openai: reattach to the job)."
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="openai backend: start the job without asking.")
    ] = False,
    cancel: Annotated[
        bool, typer.Option("--cancel", help="openai backend: cancel the run's fine-tuning job.")
    ] = False,
    nproc: Annotated[
        int,
        typer.Option(
            "--nproc",
            min=1,
            help="Train in N processes on this machine (DDP through torchrun; on CPU over gloo).",
        ),
    ] = 1,
) -> None:
    """Fine-tune a model (full, LoRA or QLoRA) with loss on assistant tokens only, or through OpenAI's API."""
    from chattune.config import load_config

    cfg = load_config(config, overrides)  # checked here, so a bad config fails once, not N times
    if cfg.train.backend == "openai":
        from chattune.hosted.job import run as run_hosted

        hosted = run_hosted(
            cfg, resume=resume, cancel=cancel, confirm=lambda q: yes or typer.confirm(q), console=console
        )
        done = "[bold green]done[/] " if hosted.status == "succeeded" else ""
        console.print(f"{done}{hosted.summary()}", highlight=False)
        return
    if yes or cancel:
        raise typer.BadParameter("--yes and --cancel apply to train.backend: openai")
    if nproc > 1:
        import subprocess
        import sys

        # torchrun starts the processes and sets RANK/WORLD_SIZE/MASTER_ADDR; accelerate reads them.
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        command += [
            "-m",
            "chattune",
            "train",
            str(config),
            *(overrides or []),
            *(["--resume"] if resume else []),
        ]
        raise typer.Exit(subprocess.call(command))
    from chattune.evaluate.during_training import suite_metrics
    from chattune.train import run

    scorer = suite_metrics if cfg.eval.suite_file is not None else None
    result = run(cfg, resume=resume, console=console, suite_metrics=scorer)
    console.print(f"[bold green]done[/] {result.summary()}")


@app.command()
@reports_errors
def validate(
    config: ConfigArg,
    overrides: OverridesArg = None,
    nproc: Annotated[
        int, typer.Option("--nproc", min=1, help="Processes `train --nproc` will use (for the step count).")
    ] = 1,
) -> None:
    """Check a config and its data without training; show one example with the trained tokens marked."""
    from chattune.config import load_config
    from chattune.train.setup import validate_run

    cfg = load_config(config, overrides)
    validate_run(cfg, console=console, world_size=nproc)


@app.command()
@reports_errors
def chat(
    model: Annotated[
        str, typer.Argument(help="Run directory, checkpoint, model folder, hub id, or 'embedded'.")
    ],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Answer one prompt and exit.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt (default: the run's, if any).")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.9,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling, for repeatable answers.")] = None,
) -> None:
    """Chat with a model in the terminal (streams replies, keeps history), or answer one --prompt."""
    from chattune.chat import chat_loop, one_shot
    from chattune.generate import GenerationSettings

    settings = GenerationSettings(
        temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed
    )
    if prompt is not None:
        one_shot(model, prompt, settings, system=system, console=console)
    else:
        chat_loop(model, settings, system=system, console=console)


@app.command()
@reports_errors
def doctor(
    config: Annotated[
        Path | None, typer.Argument(help="Optional run config: adds a memory estimate.")
    ] = None,
    overrides: OverridesArg = None,
) -> None:
    """Report accelerators, CPU features and library versions; with a config, estimate memory and recommend settings."""
    from chattune.config import load_config
    from chattune.doctor import run_doctor
    from chattune.train.setup import resolved_config

    cfg = load_config(config, overrides) if config else None
    if cfg is not None and cfg.train.recipe == "auto":
        # the estimate is for the batch and row length the run will use, which auto picks from the data
        try:
            cfg = resolved_config(cfg)
        except ChattuneError as e:
            console.print(f"[yellow]estimate for the config as written[/] (recipe auto needs the data: {e})")
    run_doctor(cfg, console=console)


@data_app.command("prepare")
@reports_errors
def data_prepare(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Read, validate, clean, dedupe and split the sources in data.prepare; account for every record."""
    from chattune.config import load_config
    from chattune.data.prepare import run
    from chattune.data.report import print_summary
    from chattune.errors import ConfigError
    from chattune.model import load_tokenizer, model_parameter_count

    cfg = load_config(config, overrides)
    if cfg.data.prepare is None:
        raise ConfigError(
            str(config), ["data.prepare: missing (list the sources to prepare under data.prepare.sources)"]
        )
    tokenizer = load_tokenizer(cfg.model)
    result = run(
        cfg.data.prepare,
        tokenizer,
        max_length=cfg.data.max_length,
        epochs=cfg.train.epochs,
        n_params=model_parameter_count(cfg.model.name),
        console=console,
    )
    print_summary(result, console)
    console.print(f"[bold green]done[/] {result.summary()}")


@data_app.command("inspect")
@reports_errors
def data_inspect(
    file: Annotated[
        Path, typer.Argument(help="A data file in any format `data prepare` reads.", show_default=False)
    ],
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Run config: its model and data.max_length.")
    ] = None,
) -> None:
    """Print the validation and token statistics of a file without changing it."""
    from chattune.config import RunConfig, load_config
    from chattune.data.inspect import inspect_file
    from chattune.data.report import print_inspection
    from chattune.model import load_tokenizer

    cfg = load_config(config) if config else RunConfig()
    tokenizer = load_tokenizer(cfg.model)
    print_inspection(inspect_file(file, tokenizer, max_length=cfg.data.max_length), console)


@app.command("eval")
@reports_errors
def eval_(
    model: Annotated[
        str, typer.Argument(help="Run directory, checkpoint, model folder, hub id, or 'embedded'.")
    ],
    base: Annotated[
        str | None, typer.Option(help="Model to compare with (default: the run's base model).")
    ] = None,
    no_base: Annotated[bool, typer.Option("--no-base", help="Evaluate the model alone.")] = False,
    suite: Annotated[
        list[Path] | None,
        typer.Option(help="Eval suite JSONL; repeatable (default: the run's eval.suite_file)."),
    ] = None,
    val: Annotated[
        Path | None, typer.Option(help="Validation JSONL (default: the run's validation data).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: <run>/eval).")] = None,
    max_items: Annotated[int | None, typer.Option(min=1, help="Answer only the first N suite items.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(min=1, help="Default: the run's eval.suite_max_new_tokens.")
    ] = None,
    system: Annotated[
        str | None, typer.Option(help="System prompt for items without one (default: the run's).")
    ] = None,
    judge_url: Annotated[
        str | None, typer.Option(help="OpenAI-compatible base URL of an LLM judge (optional).")
    ] = None,
    judge_model: Annotated[str | None, typer.Option(help="Model name the judge endpoint expects.")] = None,
    no_general: Annotated[
        bool,
        typer.Option(
            "--no-general",
            help="Skip the 115 general-knowledge questions (what the fine-tune kept of the base's answers).",
        ),
    ] = False,
) -> None:
    """Score a model on validation data and an eval suite against its base model; write metrics.json and report.html."""
    from chattune.config import TeacherConfig
    from chattune.evaluate.run import evaluate

    judge = None
    if judge_url or judge_model:
        if not (judge_url and judge_model):
            raise typer.BadParameter("--judge-url and --judge-model go together")
        judge = TeacherConfig(kind="openai", base_url=judge_url, model=judge_model)
    evaluate(
        model,
        base=base,
        compare_base=not no_base,
        suites=suite,
        val_file=val,
        out_dir=out,
        max_items=max_items,
        max_new_tokens=max_new_tokens,
        system=system,
        judge=judge,
        general=False if no_general else None,
        console=console,
    )


scenarios_app = typer.Typer(
    help="Build training conversations and eval prompts from a scenario spec.", no_args_is_help=True
)
app.add_typer(scenarios_app, name="scenarios")


@scenarios_app.command("build")
@reports_errors
def scenarios_build(
    spec: Annotated[
        Path, typer.Argument(help="Scenario spec (YAML), e.g. examples/scenarios.yaml.", show_default=False)
    ],
    overrides: OverridesArg = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Output directory (default: the spec's generate.output_dir)."),
    ] = None,
) -> None:
    """Write conversations in all eight scenario categories, a held-out eval suite and a coverage report."""
    from chattune.scenarios.build import build

    result = build(spec, out, overrides=overrides, console=console)
    console.print(f"[bold green]done[/] {result.summary()}", highlight=False)


@app.command()
@reports_errors
def augment(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Add varied copies of the user turns of augment.input (default data.train_file); assistant turns unchanged."""
    from chattune.augment.run import resolve_input, run
    from chattune.config import load_config
    from chattune.config.augment import AugmentConfig

    cfg = load_config(config, overrides)
    result = run(cfg.augment or AugmentConfig(), resolve_input(cfg), console=console)
    console.print(f"[bold green]done[/] {result.summary()}", highlight=False)


@app.command()
@reports_errors
def sweep(
    config: ConfigArg,
    overrides: OverridesArg = None,
    worker: Annotated[
        bool,
        typer.Option("--worker", help="Join the study started by `chattune sweep CONFIG`; write no reports."),
    ] = False,
) -> None:
    """Search hyperparameters (grid, random or TPE) over the config's sweep.space; one training run per trial."""
    from chattune.config import load_config
    from chattune.sweep.run import run_sweep

    cfg = load_config(config, overrides)
    result = run_sweep(cfg, source=str(config), worker=worker, console=console)
    console.print(f"[bold green]done[/] {result.summary()}", highlight=False)


@app.command()
@reports_errors
def serve(
    model: Annotated[
        str, typer.Argument(help="Run directory, checkpoint, model folder, hub id, or 'embedded'.")
    ],
    host: Annotated[
        str, typer.Option(help="Interface to bind. Loopback by default; 0.0.0.0 exposes it to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    max_new_tokens: Annotated[
        int, typer.Option(min=1, help="Default reply limit when a request sets none.")
    ] = 512,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="CHATTUNE_API_KEY",
            help="Clients must send it as a Bearer token. Required off loopback.",
            show_default=False,
        ),
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(min=1, help="Requests decoded together.", show_default=False)
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(min=0, help="Requests waiting for a slot; more get 429.", show_default=False),
    ] = None,
) -> None:
    """Serve a model behind an OpenAI-compatible API (/v1/chat/completions, /v1/completions, streaming)."""
    from chattune.serve import ServeConfig
    from chattune.serve import serve as run_server

    given: dict[str, Any] = dict(api_key=api_key, max_batch=max_batch, max_queue=max_queue)
    config = ServeConfig(
        host=host,
        port=port,
        max_new_tokens=max_new_tokens,
        **{k: v for k, v in given.items() if v is not None},  # unset: ServeConfig's defaults
    )
    run_server(model, config)


@app.command("export")
@reports_errors
def export_cmd(
    source: Annotated[str, typer.Argument(help="Run directory, checkpoint, or transformers model folder.")],
    format: Annotated[str, typer.Option("--format", help="hf, gguf or ollama.")] = "hf",
    quant: Annotated[
        list[str] | None,
        typer.Option(
            "--quant", help="Repeatable. hf: f32|f16|bf16; gguf/ollama: f16|bf16|q8_0|q4_0|q4_1|q4_k_m."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default <run>/export/<format>).")] = None,
) -> None:
    """Export merged weights (safetensors), GGUF for llama.cpp, or GGUF + Modelfile for Ollama, with a model card."""
    from pydantic import ValidationError

    from chattune.config.export import ExportConfig
    from chattune.export.run import export

    try:
        cfg = ExportConfig.model_validate({"format": format, "quants": quant or [], "out": out})
    except ValidationError as e:
        raise ChattuneError(
            "; ".join(f"{'.'.join(map(str, x['loc'])) or 'export'}: {x['msg']}" for x in e.errors())
        ) from None
    export(source, cfg, console=console)


@app.command()
@reports_errors
def ui(
    runs: Annotated[Path, typer.Option(help="Folder of run directories to show.")] = Path("runs"),
    host: Annotated[
        str, typer.Option(help="Interface to bind. Loopback by default; any other needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 7860,
    token: Annotated[
        str | None, typer.Option(help="Shared secret required on every request (open /?token=...).")
    ] = None,
) -> None:
    """A local web dashboard: runs with live curves, compare, sweeps, launch and stop jobs, chat, data."""
    from chattune.ui.app import serve_ui

    serve_ui(runs, host=host, port=port, token=token)


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())
