"""An Ollama Modelfile for an exported GGUF: TEMPLATE from the model's chat template, stop tokens, SYSTEM.

    modelfile(tokenizer, "model-q8_0.gguf", system_prompt="You are Kit ...")

Ollama speaks Go's text/template, not Jinja. A general Jinja-to-Go translator would be a compiler;
instead the chat template is rendered with marker contents to learn what it writes around each role's
message (and any default system block), and a Go template with that shape is emitted. The shape is
then checked by rendering a multi-turn conversation both ways; a template whose output depends on
more than role and content (tools, position tricks) is refused with a clear message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from chattune.errors import ChattuneError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")
MARK = "CHATTUNE_CONTENT"


@dataclass
class ChatShape:
    """What the chat template writes: text around each role's content, the generation prompt, and
    the block it inserts when a conversation has no system message (SmolLM2 does)."""

    around: dict[str, tuple[str, str]] = field(default_factory=dict)
    generation_prompt: str = ""
    default_system: str = ""

    def render(self, messages: list[dict[str, str]]) -> str:
        """What the emitted Go template renders for `messages` (used to check the translation)."""
        out = "" if messages and messages[0]["role"] == "system" else self.default_system
        for m in messages:
            before, after = self.around[m["role"]]
            out += before + m["content"] + after
        return out + self.generation_prompt


def chat_shape(tokenizer: PreTrainedTokenizerBase) -> ChatShape:
    def render(msgs: list[dict[str, str]], gen: bool = False) -> str:
        return str(tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen))

    convo = [{"role": r, "content": f"{MARK}{i}"} for i, r in enumerate(ROLES)]
    shape = ChatShape()
    done = ""
    for i, msg in enumerate(convo):
        upto = render(convo[: i + 1])
        if not upto.startswith(done):
            raise ChattuneError(
                "Ollama export: the chat template rewrites earlier turns; write TEMPLATE by hand"
            )
        block = upto[len(done) :]
        before, _, after = block.partition(msg["content"])
        shape.around[msg["role"]] = (before, after)
        done = upto
    shape.generation_prompt = render(convo[:2], gen=True)[len(render(convo[:2])) :]
    user_only = render(convo[1:2])
    user_block = "".join(shape.around["user"][0] + convo[1]["content"] + shape.around["user"][1])
    if user_only.endswith(user_block):
        shape.default_system = user_only[: -len(user_block)]

    check = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "How do I reset it?"},
    ]
    for msgs in (check, check[1:]):
        if shape.render(msgs) != render(msgs, gen=True):
            raise ChattuneError(
                "Ollama export: the chat template depends on more than each message's role and content, "
                "so it cannot be translated to Ollama's TEMPLATE automatically; write TEMPLATE by hand"
            )
    return shape


def go_template(shape: ChatShape) -> str:
    """The Go text/template Ollama runs over .Messages, equivalent to `shape.render`."""
    lit = _go_literal
    out = ""
    if shape.default_system:
        out += '{{- if or (not .Messages) (ne (index .Messages 0).Role "system") }}'
        out += lit(shape.default_system) + "{{ end }}"
    out += "{{- range .Messages }}"
    for i, role in enumerate(ROLES):
        before, after = shape.around[role]
        out += ("{{ if" if i == 0 else "{{ else if") + f' eq .Role "{role}" }}}}'
        out += lit(before) + "{{ .Content }}" + lit(after)
    out += "{{ end }}{{ end }}" + lit(shape.generation_prompt)
    return out


def modelfile(
    tokenizer: PreTrainedTokenizerBase, gguf_name: str, *, system_prompt: str | None, stops: list[str]
) -> str:
    """The Modelfile text: FROM the GGUF beside it, TEMPLATE, a stop per end-of-turn token, SYSTEM."""
    lines = [f"FROM ./{gguf_name}", f'TEMPLATE """{go_template(chat_shape(tokenizer))}"""']
    lines += [f"PARAMETER stop {json.dumps(s)}" for s in stops]
    if system_prompt:
        if '"""' in system_prompt:
            raise ChattuneError(
                'Ollama export: the system prompt contains """, which a Modelfile cannot quote'
            )
        lines.append(f'SYSTEM """{system_prompt}"""')
    return "\n".join(lines) + "\n"


def _go_literal(text: str) -> str:
    """Literal text in a Go template, safe when it contains the template delimiters."""
    if not text:
        return ""
    if "{{" in text or "}}" in text:
        return "{{ " + json.dumps(text) + " }}"  # a Go string literal (JSON escapes are valid Go escapes)
    return text
