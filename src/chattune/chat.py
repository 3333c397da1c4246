"""`chattune chat`: talk to a run, checkpoint or model in the terminal.

    chattune chat runs/quickstart                       # interactive, streamed, keeps history
    chattune chat runs/quickstart -p "How do I descale?" --temperature 0   # one answer, for scripts
    chattune chat runs/openai                           # a train.backend: openai run, through the API

In a session: /reset clears the history, /system TEXT sets the system prompt, /exit (or Ctrl-D) leaves.
A run trained with one system prompt is chatted with that prompt by default (saved as final/chat_defaults.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from chattune.generate import GenerationSettings

if TYPE_CHECKING:
    from chattune.provider import Provider

CHAT_DEFAULTS = "chat_defaults.json"


def default_system_prompt(name_or_path: str) -> str | None:
    """The system prompt the run was trained with, if it saved one."""
    for cand in (Path(name_or_path) / "final" / CHAT_DEFAULTS, Path(name_or_path) / CHAT_DEFAULTS):
        if cand.is_file():
            saved = json.loads(cand.read_text(encoding="utf-8"))
            prompt = saved.get("system_prompt") if isinstance(saved, dict) else None
            return prompt if isinstance(prompt, str) else None
    return None


def _load(name_or_path: str, console: Console) -> Provider:
    from chattune.provider import open_provider

    with console.status(f"loading {name_or_path} ..."):
        return open_provider(name_or_path)


def _stream(
    provider: Provider, messages: list[dict[str, str]], settings: GenerationSettings, console: Console
) -> str:
    gen = provider.generation(messages, settings)
    for piece in gen:
        console.print(piece, end="", markup=False, highlight=False, soft_wrap=True)
    console.print()
    r = gen.reply
    ttft = f"{r.time_to_first_token:.2f}s" if r.time_to_first_token is not None else "-"
    console.print(
        f"[dim]{r.completion_tokens} tokens, first after {ttft}, {r.tokens_per_second:.1f} tok/s[/]"
    )
    return r.text


def one_shot(
    name_or_path: str, prompt: str, settings: GenerationSettings, *, system: str | None, console: Console
) -> str:
    provider = _load(name_or_path, console)
    system = system if system is not None else default_system_prompt(name_or_path)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    return _stream(provider, messages, settings, console)


def chat_loop(
    name_or_path: str, settings: GenerationSettings, *, system: str | None, console: Console
) -> None:
    provider = _load(name_or_path, console)
    system = system if system is not None else default_system_prompt(name_or_path)
    history: list[dict[str, str]] = []
    console.print("[dim]/reset clears history, /system TEXT sets the system prompt, /exit leaves[/]")
    while True:
        try:
            user = console.input("[bold cyan]you>[/] ").strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            return
        if not user:
            continue
        if user in ("/exit", "/quit"):
            return
        if user == "/reset":
            history = []
            console.print("[dim]history cleared[/]")
            continue
        if user.startswith("/system"):
            system = user.removeprefix("/system").strip() or None
            console.print(f"[dim]system prompt {'set' if system else 'cleared'}[/]")
            continue
        history.append({"role": "user", "content": user})
        console.print("[bold green]assistant>[/] ", end="")
        messages = ([{"role": "system", "content": system}] if system else []) + history
        history.append({"role": "assistant", "content": _stream(provider, messages, settings, console)})
