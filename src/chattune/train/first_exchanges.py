"""What scope pairs and clarify pairs both read in the data: each conversation's first exchange, and a
sentence embedder to compare requests with.

    system, request, reply = first_exchange(conv)     # None when it does not open with user -> assistant
    vectors = sentence_embedder()(["It's not working.", ...])   # L2-normalised rows
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chattune.data.conversation import Conversation

Embed = Callable[[list[str]], Any]  # texts -> L2-normalised rows (numpy)


def first_exchange(conv: Conversation) -> tuple[str | None, str, str] | None:
    """(system prompt or None, first request, first reply), stripped; None without a first exchange."""
    messages = conv.messages
    system = None
    if messages and messages[0].role == "system":
        system, messages = messages[0].content, messages[1:]
    if len(messages) < 2 or messages[0].role != "user" or messages[1].role != "assistant":
        return None
    return system, messages[0].content.strip(), messages[1].content.strip()


@functools.cache  # one load per process: the redirect and the clarifying question are both looked for
def sentence_embedder() -> Embed:
    """all-MiniLM-L6-v2, the same embedder `chattune data prepare` scores scope with."""
    from chattune.config.prepare import ScopeConfig
    from chattune.data.clean import ScopeScorer

    return ScopeScorer(ScopeConfig()).embed
