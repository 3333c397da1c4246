"""Scope pairs: general requests asked under the domain's system prompt, answered with the data's own redirect.

    redirect = find_redirect(train_conversations)      # None when the data redirects nothing
    extra = scope_pair_conversations(redirect, count=38)

Why: a support set teaches "redirect what is off-topic" from the 15-20 distinct off-topic requests it
happens to hold, while rehearsal (rehearsal.py) teaches the model to go on answering general requests
asked without the domain's system prompt. A held-out off-topic question that looks like a rehearsed one
("What's the capital of Australia?") was then answered under the domain's prompt as well: the model keyed
the behaviour on the request, not on the prompt. Asking some of the same general requests under the
domain's system prompt, answered with the data's own redirect, shows the contrast directly: the same
request is answered without the prompt and redirected with it.

The redirect is found in the data itself, not assumed: a reply given word for word to several distinct
first requests, whose requests are unlike one another (paraphrases of one fact are alike) and closer to
general requests than to the rest of the data (a clarifying question such as "Could you clarify which
model you mean?" answers vague requests that are about the domain). Several such replies (a set that
varies its redirect wording) are used in turn. A set with no system prompt gets no pairs: the pairs would
contradict rehearsal, which asks the same requests the same way.

With `train.scope_pairs_both_ways` the pairs go both ways: the data's own redirected requests are also
asked with no system prompt and answered as the base model answers them (the opening of its own reply;
see rehearsal.py). Without that the redirect spreads to requests asked with no system prompt (SmolLM2's
template fills in a general one-line prompt of its own): of 60 off-topic requests that a set never
trains, the tuned model answered 58% and redirected the rest, where the base answers all; both ways,
87% (nine products). It is not the default: under the prompt, out of scope and clarify came out a few
points lower (docs/recipe-measurements.md, "Scope pairs both ways"), and chattune's chat and server
use the run's own system prompt.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass

from chattune.data.conversation import Conversation, Message
from chattune.train.first_exchanges import Embed, first_exchange, sentence_embedder

MIN_REQUESTS = 4  # distinct first requests one reply must answer to count as a fixed reply
# Mean similarity between the requests one reply answers (all-MiniLM-L6-v2, cosine). Measured on the
# benchmark's three families: redirects 0.05-0.15, a clarifying template 0.18-0.20, paraphrases of one
# fact 0.37-0.88.
MAX_REQUEST_LIKENESS = 0.3
MIN_SHARE = 0.01  # redirected conversations, as a share of the set (the quickstart's: 6 of 321)


@dataclass(frozen=True)
class Redirect:
    system: str  # the domain's system prompt, which the pairs carry
    replies: tuple[str, ...]  # the redirect replies, most used first
    requests: int  # distinct off-topic requests they answer in the data
    conversations: int
    # The general requests to pair, least like the data's own (not redirected) requests first: "How many
    # legs does an insect have?" redirected would teach the model to redirect "How many people can share
    # one kettle?" too.
    pair_requests: tuple[str, ...] = ()
    # The data's own redirected requests, which the pairs' other direction asks without the system prompt.
    own_requests: tuple[str, ...] = ()

    def describe(self) -> str:
        wordings = f"{len(self.replies)} wordings" if len(self.replies) > 1 else "one wording"
        return f"the data redirects {self.requests} distinct off-topic requests ({self.conversations} conversations, {wordings})"


def find_redirect(
    conversations: list[Conversation], general: list[str], embed: Embed | None = None
) -> Redirect | None:
    """The data's redirect reply (or replies), judged from each conversation's first exchange."""
    import numpy as np

    by_reply: dict[str, set[str]] = defaultdict(set)
    uses: Counter[str] = Counter()
    systems: dict[str, Counter[str]] = defaultdict(Counter)
    requests: set[str] = set()
    for conv in conversations:
        first = first_exchange(conv)
        if first is None:
            continue
        system, request, reply = first
        requests.add(request)
        by_reply[reply].add(request)
        uses[reply] += 1
        if system:
            systems[reply][system] += 1
    fixed = {reply: asked for reply, asked in by_reply.items() if len(asked) >= MIN_REQUESTS}
    if not fixed:
        return None
    embed = embed or sentence_embedder()
    everything = sorted(requests)
    vectors = embed(everything)
    row = {text: i for i, text in enumerate(everything)}
    general_vectors = embed(general)
    found: list[str] = []
    for reply, asked in fixed.items():
        own = vectors[[row[r] for r in sorted(asked)]]
        likeness = (own @ own.T)[~np.eye(len(asked), dtype=bool)].mean()
        others = [row[r] for r in everything if r not in asked]
        if likeness > MAX_REQUEST_LIKENESS or not others:
            continue
        to_general = (own @ general_vectors.T).max(axis=1).mean()
        to_domain = (own @ vectors[others].T).max(axis=1).mean()
        if to_general > to_domain:
            found.append(reply)
    conversations_redirected = sum(uses[r] for r in found)
    if not found or conversations_redirected < MIN_SHARE * len(conversations):
        return None
    system_counts = sum((systems[r] for r in found), Counter())
    if not system_counts:
        return None
    found.sort(key=lambda r: -uses[r])
    redirected = set().union(*(by_reply[r] for r in found))
    in_scope = [row[r] for r in everything if r not in redirected]
    likeness_to_domain = (
        (general_vectors @ vectors[in_scope].T).max(axis=1) if in_scope else np.zeros(len(general))
    )
    return Redirect(
        system=system_counts.most_common(1)[0][0],
        replies=tuple(found),
        requests=len(redirected),
        conversations=conversations_redirected,
        pair_requests=tuple(general[i] for i in np.argsort(likeness_to_domain, kind="stable")),
        own_requests=tuple(sorted(redirected)),
    )


def scope_pair_conversations(redirect: Redirect, count: int) -> list[Conversation]:
    """`count` general requests, the least like the data's own first, asked under the domain's system
    prompt, each answered with one of the data's redirect replies in turn."""
    replies = itertools.cycle(redirect.replies)
    return [
        Conversation(
            messages=[
                Message(role="system", content=redirect.system),
                Message(role="user", content=prompt),
                Message(role="assistant", content=next(replies)),
            ],
            meta={"scope_pair": True},
        )
        for prompt in redirect.pair_requests[:count]
    ]
