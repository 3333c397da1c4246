"""Token ids and assistant-only labels from the model's own chat template.

    examples, stats = tokenize_conversations(conversations, tokenizer, max_length=1024)

Most stock templates (SmolLM2's, Llama's, Qwen's) have no `{% generation %}` markers, so
`return_assistant_tokens_mask` cannot be used. Instead each assistant turn is located by rendering the
conversation up to that turn twice: the prompt (`messages[:i]` + generation prompt) and the turn itself
(`messages[:i+1]`). The text between the two is what the model must produce, including the end-of-turn
token (so it learns to stop); trailing whitespace after it is not trained. Segments are tokenised
separately, which is exactly how the model sees them at inference: prompt tokens, then generated tokens.

`trained_roles` adds other roles' contents to the targets (`data.train_on_roles`: the user's requests, as
Axolotl's `train_on_inputs` or LLaMA-Factory's `train_on_prompt`). The prompt is tokenised exactly as
without them, and a token is a target where it overlaps such a content's text (character offsets from the
fast tokenizer), so the ids stay those the model sees at inference and the template around stays context.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar, cast

from chattune.data.conversation import Conversation
from chattune.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

IGNORE_INDEX = -100
_T = TypeVar("_T")


def decode_text(
    tokenizer: PreTrainedTokenizerBase, ids: list[int], *, skip_special_tokens: bool = False
) -> str:
    """The text of one sequence of token ids. `tokenizer.decode` is annotated as returning str or, for a
    batch of sequences, a list of them; one sequence gives a str."""
    text = tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
    if not isinstance(text, str):
        raise TypeError(f"{type(tokenizer).__name__}.decode returned {type(text).__name__} for one sequence")
    return text


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX where the token is context, not a target
    source_index: int  # position of the conversation in the input list

    @property
    def n_supervised(self) -> int:
        return sum(1 for t in self.labels if t != IGNORE_INDEX)

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class TokenizeStats:
    conversations: int = 0
    kept: int = 0
    truncated: int = 0  # kept, but cut at max_length
    dropped_no_target: int = 0  # every assistant token fell beyond max_length, or none to train
    dropped_indices: list[int] = field(default_factory=list)
    tokens: int = 0
    supervised_tokens: int = 0

    def summary(self) -> str:
        return (
            f"{self.kept}/{self.conversations} conversations kept ({self.truncated} truncated at max_length, "
            f"{self.dropped_no_target} dropped with no assistant token left to train); "
            f"{self.tokens:,} tokens, {self.supervised_tokens:,} trained"
        )


class ChatRenderer:
    """Renders messages with a tokenizer's chat template, ~3x faster than `apply_chat_template`.

    `apply_chat_template` re-validates its arguments on every call, which dominates when rendering
    each conversation several times (as `render_segments` does). This renders transformers' own
    compiled template directly with the variables transformers passes, after checking on a probe that
    both give the same text; if they ever differ (or transformers moves the helper), it falls back.

    With `reuse_layouts` (data preparation, which renders only to count tokens) a template is rendered
    once per sequence of roles, with markers for the contents, and later conversations with the same
    roles are filled in: ~30x cheaper than jinja's sandbox. Only for templates that pass each content
    through unchanged: checked on a probe with awkward contents, on each layout's first use and on
    every 64th render after; one difference turns layouts off for good.
    """

    _PROBE = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "u"},
        {"role": "assistant", "content": "a"},
    ]
    # contents a template might trim, split or test: a layout must reproduce them exactly
    _AWKWARD = [
        {"role": "system", "content": "  spaced system \n"},
        {"role": "user", "content": "\tuser <think>x</think> {{ y }}  "},
        {"role": "assistant", "content": "<think>r</think>\n\nanswer  "},
        {"role": "user", "content": "again"},
        {"role": "assistant", "content": " done."},
    ]
    _MARK = re.compile("\ue000([0-9]+)\ue001")  # private-use code points: not in any template's text
    CHECK_EVERY = 64

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, reuse_layouts: bool = False):
        self.tokenizer = tokenizer
        self._template = None
        try:
            from transformers.utils.chat_template_utils import _compile_jinja_template

            template = _compile_jinja_template(tokenizer.chat_template)
            variables = dict(tokenizer.special_tokens_map)
            if all(
                self._slow(self._PROBE, g)
                == template.render(messages=self._PROBE, add_generation_prompt=g, **variables)
                for g in (False, True)
            ):
                self._template, self._variables = template, variables
        except Exception:  # any surprise: the public API is always right
            self._template = None
        self._layouts: dict[tuple[tuple[str, ...], bool], list[str] | None] = {}
        self._calls = 0
        try:
            self.reuse_layouts = reuse_layouts and all(
                self._filled(self._AWKWARD[:n], g) == self._render(self._AWKWARD[:n], g)
                for n in (3, 5)
                for g in (False, True)
            )
        except Exception:  # a template that refuses the probe's shape: jinja renders everything
            self.reuse_layouts = False
        self._layouts.clear()

    def _slow(self, messages: list[dict[str, str]], gen_prompt: bool) -> str:
        out = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen_prompt)
        assert isinstance(out, str)
        return out

    def _render(self, messages: list[dict[str, str]], gen_prompt: bool) -> str:
        if self._template is None:
            return self._slow(messages, gen_prompt)
        # a jinja2 Template (from a transformers helper without annotations): render gives a str
        return cast(
            str, self._template.render(messages=messages, add_generation_prompt=gen_prompt, **self._variables)
        )

    def _filled(self, messages: list[dict[str, str]], gen_prompt: bool) -> str | None:
        """The text from the layout of these roles, or None where the template has no usable layout
        (it dropped, repeated or reordered a content)."""
        key = (tuple(m["role"] for m in messages), gen_prompt)
        if key not in self._layouts:
            marked = [{"role": r, "content": f"\ue000{i}\ue001"} for i, r in enumerate(key[0])]
            pieces = self._MARK.split(self._render(marked, gen_prompt))
            in_order = [int(x) for x in pieces[1::2]] == list(range(len(messages)))
            self._layouts[key] = pieces[0::2] if in_order else None
        layout = self._layouts[key]
        if layout is None:
            return None
        out = [layout[0]]
        for m, after in zip(messages, layout[1:], strict=True):
            out += (m["content"], after)
        return "".join(out)

    def __call__(self, messages: list[dict[str, str]], gen_prompt: bool = False) -> str:
        if not messages:
            return ""
        if not self.reuse_layouts:
            return self._render(messages, gen_prompt)
        self._calls += 1
        first_use = (tuple(m["role"] for m in messages), gen_prompt) not in self._layouts
        filled = self._filled(messages, gen_prompt)
        if filled is None:
            return self._render(messages, gen_prompt)
        if first_use or self._calls % self.CHECK_EVERY == 0:
            exact = self._render(messages, gen_prompt)
            if exact != filled:
                self.reuse_layouts = False
                return exact
        return filled


def render_segments(
    conv: Conversation, tokenizer: PreTrainedTokenizerBase, renderer: ChatRenderer | None = None
) -> list[tuple[str, bool]]:
    """The chat-template rendering of `conv` cut into (text, is_trained) pieces."""
    messages = conv.as_dicts()
    render = renderer or ChatRenderer(tokenizer)
    full = render(messages)
    segments: list[tuple[str, bool]] = []
    pos = 0
    for i, msg in enumerate(conv.messages):
        if msg.role != "assistant" or msg.weight == 0:
            continue
        prompt = render(messages[:i], gen_prompt=True)
        through = full if i == len(messages) - 1 else render(messages[: i + 1])
        end = len(through.rstrip())
        if not (through.startswith(prompt) and full.startswith(through[:end]) and len(prompt) >= pos):
            raise DataError(
                f"the chat template does not render turn {i} as a prefix of the whole conversation, so the "
                "assistant tokens cannot be located; set model.chat_template to a prefix-stable template",
                field=f"messages[{i}]",
            )
        segments += [(full[pos : len(prompt)], False), (full[len(prompt) : end], True)]
        pos = end
    segments.append((full[pos:], False))
    return [(text, trained) for text, trained in segments if text]


ASSISTANT_ONLY: frozenset[str] = frozenset({"assistant"})
_CONTENT_MARK = "\ue000"  # a private-use code point: not in any template's text


def content_spans(conv: Conversation, roles: frozenset[str], renderer: ChatRenderer) -> list[tuple[int, int]]:
    """Character ranges, in the whole conversation's rendering, of the contents of messages in `roles`
    other than the assistant's (whose turns render_segments locates). A message starts where the
    rendering of the messages before it plus a marker puts the marker; its text must stand there."""
    messages = conv.as_dicts()
    full = renderer(messages)
    spans: list[tuple[int, int]] = []
    for i, msg in enumerate(conv.messages):
        if msg.role == "assistant" or msg.role not in roles or msg.weight == 0 or not msg.content.strip():
            continue
        marked = renderer([*messages[:i], {"role": msg.role, "content": _CONTENT_MARK}])
        at = marked.find(_CONTENT_MARK)
        core = msg.content.strip()
        lead = len(msg.content) - len(msg.content.lstrip())
        if at >= 0 and full.startswith(marked[:at]):
            if full.startswith(msg.content, at):
                spans.append((at + lead, at + lead + len(core)))
                continue
            if full.startswith(core, at):  # a template that trims contents
                spans.append((at, at + len(core)))
                continue
        raise DataError(
            f"the chat template does not render this {msg.role} message's content as written where the "
            "message starts, so it cannot be trained; leave data.train_on_roles at [assistant] for this template",
            field=f"messages[{i}].content",
        )
    return spans


def token_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, no special tokens added. A fast tokenizer's Rust backend is called
    directly: transformers' conversion of its output to Python dicts costs more than the encoding."""
    if not texts:
        return []
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return [enc.ids for enc in backend.encode_batch(texts, add_special_tokens=False)]
    return cast(list[list[int]], tokenizer(texts, add_special_tokens=False)["input_ids"])


def _token_ids_and_offsets(
    tokenizer: PreTrainedTokenizerBase, texts: list[str]
) -> tuple[list[list[int]], list[list[tuple[int, int]]]]:
    """token_ids, and each token's character range in its text (a fast tokenizer's offsets), from one
    encoding: for labels by position."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise DataError(
            f"{type(tokenizer).__name__} is not a fast tokenizer, so it gives no character offsets to train the "
            "contents of data.train_on_roles; leave it at [assistant]"
        )
    encodings = backend.encode_batch(texts, add_special_tokens=False)
    return [enc.ids for enc in encodings], [list(enc.offsets) for enc in encodings]


def tokenize_conversations(
    conversations: list[Conversation],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
    trained_roles: frozenset[str] = ASSISTANT_ONLY,
) -> tuple[list[TokenizedExample], TokenizeStats]:
    """Tokenise with labels on assistant tokens (and the contents of any other `trained_roles`); cut at
    max_length; drop (and count) examples left with no reply token to learn. One batched call to the
    fast tokenizer for every segment."""
    stats = TokenizeStats(conversations=len(conversations))
    renderer = ChatRenderer(tokenizer)
    per_conv = [_located(render_segments, c, renderer, tokenizer) for c in conversations]
    spans = (
        [[] for _ in conversations]
        if trained_roles <= ASSISTANT_ONLY
        else [_located(content_spans, c, renderer, trained_roles) for c in conversations]
    )
    flat = [text for segs in per_conv for text, _ in segs]
    offsets: list[list[tuple[int, int]]] | None = None
    if any(spans):
        ids, offsets = _token_ids_and_offsets(tokenizer, flat)
    else:
        ids = token_ids(tokenizer, flat)
    examples, k = [], 0
    for index, segs in enumerate(per_conv):
        input_ids: list[int] = []
        labels: list[int] = []
        replies: list[bool] = []  # which tokens are the assistant's targets
        start = 0  # the segment's character position in the whole rendering
        for text, trained in segs:
            piece = ids[k]
            if trained:
                labels += piece
            elif offsets is not None and spans[index]:
                labels += [
                    t if any(start + a < hi and start + b > lo for lo, hi in spans[index]) else IGNORE_INDEX
                    for t, (a, b) in zip(piece, offsets[k], strict=True)
                ]
            else:
                labels += [IGNORE_INDEX] * len(piece)
            input_ids += piece
            replies += [trained] * len(piece)
            start += len(text)
            k += 1
        if len(input_ids) > max_length:
            stats.truncated += 1
            input_ids, labels, replies = input_ids[:max_length], labels[:max_length], replies[:max_length]
        # The first token is never a target (nothing predicts it), so it does not count; a conversation
        # whose replies are all cut (or all weight 0) is dropped even where its requests are targets.
        if not any(replies[1:]):
            stats.dropped_no_target += 1
            stats.dropped_indices.append(index)
            continue
        ex = TokenizedExample(input_ids, labels, index)
        examples.append(ex)
        stats.tokens += len(ex)
        stats.supervised_tokens += ex.n_supervised
    stats.kept = len(examples)
    return examples, stats


def _located(render: Callable[..., _T], conv: Conversation, renderer: ChatRenderer, *args: object) -> _T:
    """render(conv, ..., renderer), with a failure (the chat template refusing the conversation, say)
    reported at the conversation's file and line, before training starts rather than hours into it."""
    file, _, line = (conv.source or "").rpartition(":")
    try:
        return render(conv, *args, renderer)
    except DataError as e:
        if not file or e.file is not None:
            raise
        raise DataError(str(e), file=file, line=int(line)) from e
    except Exception as e:  # jinja2's TemplateError, or whatever a custom template raises
        message = f"cannot be tokenised: {type(e).__name__}: {e}"
        raise DataError(message, file=file or None, line=int(line) if file else None) from e


def render_trained_markup(example: TokenizedExample, tokenizer: PreTrainedTokenizerBase) -> str:
    """Rich markup of one example: trained tokens in bold green, context dimmed. For `chattune validate`."""
    from rich.markup import escape

    out: list[str] = []
    run: list[int] = []
    run_trained: bool | None = None
    for tok, lab in [*zip(example.input_ids, example.labels, strict=True), (None, None)]:
        trained = lab is not None and lab != IGNORE_INDEX
        if tok is None or (run and trained != run_trained):
            text = escape(decode_text(tokenizer, run))
            out.append(f"[bold green]{text}[/]" if run_trained else f"[dim]{text}[/]")
            run = []
        if tok is not None:
            run.append(tok)
            run_trained = trained
    return "".join(out)
