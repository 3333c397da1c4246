"""The `chattune` command: a thin table of commands. Each parses, loads config, and calls one stage.

    chattune <verb> CONFIG.yaml [section.key=value ...]

Heavy libraries (torch, transformers) are imported inside the commands so `chattune --help` is instant.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

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

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).", show_default=False)]
OverridesArg = Annotated[
    list[str] | None, typer.Argument(help="Dotted overrides applied before validation, e.g. train.learning_rate=1e-4")
]


def reports_errors(fn: F) -> F:
    """Turn chattune's own errors into a red message and exit status 2, with no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ChattuneError as e:
            err_console.print(f"error: {e}", style="bold red", highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@reports_errors
def train(
    config: ConfigArg,
    overrides: OverridesArg = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the run's latest valid checkpoint.")] = False,
) -> None:
    """Fine-tune a model (full, LoRA or QLoRA) with loss on assistant tokens only."""
    from chattune.config import load_config
    from chattune.train import run

    cfg = load_config(config, overrides)
    result = run(cfg, resume=resume, console=console)
    console.print(f"[bold green]done[/] {result.summary()}")


@app.command()
@reports_errors
def validate(config: ConfigArg, overrides: OverridesArg = None) -> None:
    """Check a config and its data without training; show one example with the trained tokens marked."""
    from chattune.config import load_config
    from chattune.train.setup import validate_run

    cfg = load_config(config, overrides)
    validate_run(cfg, console=console)


@app.command()
@reports_errors
def chat(
    model: Annotated[str, typer.Argument(help="Run directory, checkpoint, model folder, hub id, or 'embedded'.")],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p", help="Answer one prompt and exit.")] = None,
    system: Annotated[str | None, typer.Option(help="System prompt (default: the run's, if any).")] = None,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy.")] = 0.7,
    top_p: Annotated[float, typer.Option(min=0.0, max=1.0)] = 0.9,
    max_new_tokens: Annotated[int, typer.Option(min=1)] = 256,
    seed: Annotated[int | None, typer.Option(help="Seed for sampling, for repeatable answers.")] = None,
) -> None:
    """Chat with a model in the terminal (streams replies, keeps history), or answer one --prompt."""
    from chattune.chat import GenerationSettings, chat_loop, one_shot

    settings = GenerationSettings(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    if prompt is not None:
        one_shot(model, prompt, settings, system=system, console=console)
    else:
        chat_loop(model, settings, system=system, console=console)


@app.command()
@reports_errors
def doctor(
    config: Annotated[Path | None, typer.Argument(help="Optional run config: adds a memory estimate.")] = None,
    overrides: OverridesArg = None,
) -> None:
    """Report accelerators, CPU features and library versions; with a config, estimate memory and recommend settings."""
    from chattune.config import load_config
    from chattune.doctor import run_doctor

    cfg = load_config(config, overrides) if config else None
    run_doctor(cfg, console=console)


def main() -> None:  # pragma: no cover - entry point
    sys.exit(app())
