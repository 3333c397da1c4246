"""Exact and near-duplicate detection across every source.

    finder = DuplicateFinder(cfg.dedupe)
    for key, messages in items:           # in priority order: the first of a cluster is kept
        dup_of = finder.add(key, messages) # None when new, else the key of the kept conversation

Exact: a hash of the normalised text (case, punctuation and spacing ignored). Near: MinHash over word
3-gram shingles with datasketch's LSH index, confirmed by the estimated Jaccard similarity against
the candidate so an LSH false positive never drops a conversation. Two answers to the same question
that say different things share few 3-grams, so they stay apart at the default threshold of 0.8.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from chattune.data.prepare_config import DedupeConfig

_NON_WORD = re.compile(r"[^\w]+")


def normalised_text(messages: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{m['role']}: {' '.join(_NON_WORD.sub(' ', m['content'].lower()).split())}" for m in messages
    )


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def shingles(text: str, n: int = 3) -> set[bytes]:
    words = _NON_WORD.sub(" ", text).split()
    if len(words) < n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i : i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


class DuplicateFinder:
    def __init__(self, cfg: DedupeConfig):
        from datasketch import MinHash, MinHashLSH

        self.cfg = cfg
        self.exact: dict[bytes, Any] = {}
        self._MinHash = MinHash
        # Permutations are drawn once; MinHash() would otherwise redraw them for every document.
        template = MinHash(num_perm=cfg.num_perm, seed=1)
        self._perms, self._scheme = template.permutations, template.scheme
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) if cfg.near else None
        self.sketches: dict[Any, Any] = {}

    def add(self, key: Any, messages: list[dict[str, Any]]) -> tuple[Any, str] | None:
        """Register a conversation; returns (kept key, "exact_duplicate" | "near_duplicate") if it duplicates one."""
        text = normalised_text(messages)
        if self.cfg.exact:
            h = text_hash(text)
            if h in self.exact:
                return self.exact[h], "exact_duplicate"
            self.exact[h] = key
        if self.lsh is not None:
            m = self.sketch(text)
            for cand in self.lsh.query(m):
                if m.jaccard(self.sketches[cand]) >= self.cfg.threshold:
                    return cand, "near_duplicate"
            self.lsh.insert(key, m, check_duplication=False)
            self.sketches[key] = m
        return None

    def sketch(self, text: str) -> Any:
        m = self._MinHash(num_perm=self.cfg.num_perm, permutations=self._perms, scheme=self._scheme)
        m.update_batch(list(shingles(text)))
        return m
