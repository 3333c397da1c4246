"""Clarify pairs: vague requests asked under the domain's system prompt, answered with the data's own clarifying question.

    clarify = find_clarify(train_conversations, vague_requests())   # None when the data asks nothing back
    extra = clarify_pair_conversations(clarify, count=40)

Why: a support set teaches "ask what is meant" from the 10-20 distinct vague requests it happens to hold
("It's not working.", "How much is it?"), and a small model draws the line where those requests lie: a
held-out vague request worded unlike them gets a fact or the redirect. More distinct vague requests
answered the same way show where the line is, as scope pairs (scope_pairs.py) do for off-topic ones.

The clarifying replies are found in the data itself: first replies whose first sentence is a question,
sharing their opening words ("Could you clarify ...") across several distinct requests. Each shipped vague
request is answered with the reply the data gives its most similar vague request (all-MiniLM-L6-v2), so a
set that words each clarifying question for its request keeps doing so.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from importlib.resources import files

from chattune.data.conversation import Conversation, Message
from chattune.train.first_exchanges import Embed, first_exchange, sentence_embedder

MIN_REQUESTS = 6  # distinct first requests answered with questions of one opening
OPENING_WORDS = 3  # "could you clarify"
MIN_SHARE = 0.01  # clarifying conversations, as a share of the set


@dataclass(frozen=True)
class Clarify:
    system: str | None  # the system prompt the data's clarifying conversations carry
    opening: str  # the opening words the data's clarifying questions share
    requests: int  # distinct vague requests the data answers with them
    conversations: int
    # Shipped vague requests, the least like the data's other requests first, each with the reply the data
    # gives its most similar vague request.
    pairs: tuple[tuple[str, str], ...] = ()

    def describe(self) -> str:
        return (
            f'the data answers {self.requests} distinct vague requests with a question ("{self.opening} ...", '
            f"{self.conversations} conversations)"
        )


def vague_requests() -> list[str]:
    text = files("chattune.train").joinpath("vague_requests.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def find_clarify(
    conversations: list[Conversation], vague: list[str], embed: Embed | None = None
) -> Clarify | None:
    """The data's clarifying replies (the largest group sharing an opening), and the pairs to add."""
    import numpy as np

    asked: dict[str, dict[str, str]] = defaultdict(dict)  # opening -> request -> reply
    uses: Counter[str] = Counter()
    systems: dict[str, Counter[str | None]] = defaultdict(Counter)
    requests: set[str] = set()
    for conv in conversations:
        first = first_exchange(conv)
        if first is None:
            continue
        system, request, reply = first
        requests.add(request)
        if not _first_sentence(reply).endswith("?"):
            continue
        opening = " ".join(re.findall(r"[\w']+", reply.lower())[:OPENING_WORDS])
        asked[opening].setdefault(request, reply)
        uses[opening] += 1
        systems[opening][system] += 1
    groups = [o for o, by_request in asked.items() if len(by_request) >= MIN_REQUESTS]
    if not groups:
        return None
    opening = max(groups, key=lambda o: (len(asked[o]), uses[o]))
    if uses[opening] < MIN_SHARE * len(conversations):
        return None
    own = asked[opening]
    known = set(own) | requests
    candidates = [v for v in vague if v not in known]
    if not candidates:
        return None
    embed = embed or sentence_embedder()
    own_requests = sorted(own)
    others = sorted(requests - set(own))
    candidate_vectors = embed(candidates)
    nearest = (candidate_vectors @ embed(own_requests).T).argmax(axis=1)
    # A vague request close to one the data answers outright ("Is it waterproof?" beside "Is it safe?")
    # would contradict the data: those come last.
    likeness_to_answered = (
        (candidate_vectors @ embed(others).T).max(axis=1) if others else np.zeros(len(candidates))
    )
    order = np.argsort(likeness_to_answered, kind="stable")
    return Clarify(
        system=systems[opening].most_common(1)[0][0],
        opening=opening,
        requests=len(own),
        conversations=uses[opening],
        pairs=tuple((candidates[i], own[own_requests[nearest[i]]]) for i in order),
    )


def clarify_pair_conversations(clarify: Clarify, count: int) -> list[Conversation]:
    """`count` shipped vague requests, asked under the data's system prompt and answered with its question."""
    conversations = []
    for request, reply in clarify.pairs[:count]:
        messages = [Message(role="system", content=clarify.system)] if clarify.system else []
        messages += [Message(role="user", content=request), Message(role="assistant", content=reply)]
        conversations.append(Conversation(messages=messages, meta={"clarify_pair": True}))
    return conversations


def _first_sentence(reply: str) -> str:
    line = reply.strip().split("\n")[0]
    match = re.match(r"(.+?[.!?])(\s|$)", line)
    return match.group(1) if match else line
