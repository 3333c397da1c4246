"""Exact and near-duplicate detection across every source.

    finder = DuplicateFinder(cfg.dedupe)
    for key, conv in items:                     # in priority order: the first of a cluster is kept
        found = finder.add(key, conv.messages)  # None when new, else (kept key, "exact_duplicate" | "near_duplicate")

Exact: a hash of the normalised text (case, punctuation and spacing ignored). Near: datasketch MinHash
over word 3-gram shingles, banded LSH for candidates, each confirmed by the estimated Jaccard
similarity so an LSH false positive never drops a conversation. Two answers to the same question
that say different things share few 3-grams, so they stay apart at the default threshold of 0.8.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from chattune.config.prepare import DedupeConfig
from chattune.data.conversation import Message

_NON_WORD = re.compile(r"[^\w]+")


def normalised_text(messages: Sequence[Message]) -> str:
    return "\n".join(f"{m.role}: {' '.join(_NON_WORD.sub(' ', m.content.lower()).split())}" for m in messages)


def text_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


def shingles(text: str) -> set[bytes]:
    """Word 3-grams of a `normalised_text` as bytes (what MinHash hashes); the text itself when it has
    fewer words. Encoding once and joining bytes is ~2x faster than joining and encoding each 3-gram."""
    words = text.encode("utf-8").split()
    if len(words) < 3:
        return {b" ".join(words)}
    return set(map(b" ".join, zip(words, words[1:], words[2:], strict=False)))


class HashTable:
    """int64 key -> int32 value, several values per key allowed, in two numpy arrays (open addressing,
    linear probing, at most half full). A Python dict of 1M int keys costs ~75 MB; this ~24 MB, which is
    what keeps near-duplicate detection on a million conversations (14 LSH bands each) inside the
    memory target. Lookups and inserts take whole batches, so the probing runs in numpy."""

    def __init__(self, capacity: int = 1 << 12):
        self.keys = np.zeros(capacity, dtype=np.int64)
        self.vals = np.full(capacity, -1, dtype=np.int32)
        self.n = 0

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        # Multiplicative (Fibonacci) hashing: the top bits of key * 2^64/phi, whatever bits the keys vary in.
        bits = len(self.keys).bit_length() - 1
        slots: np.ndarray = (
            (keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
        ).astype(np.int64)
        return slots

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query positions, values): one pair for every value stored under each query key."""
        mask = len(self.keys) - 1
        pos = self._slots(keys)
        active = np.arange(len(keys))
        found_q, found_v = [], []
        while active.size:
            p = pos[active]
            v = self.vals[p]
            hit = (v >= 0) & (self.keys[p] == keys[active])
            found_q.append(active[hit])
            found_v.append(v[hit])
            active = active[v >= 0]  # probe on until an empty slot: a key may be stored more than once
            pos[active] = (pos[active] + 1) & mask
        return np.concatenate(found_q), np.concatenate(found_v)

    def insert(self, keys: np.ndarray, vals: np.ndarray) -> None:
        if 2 * (self.n + len(keys)) > len(self.keys):
            self._grow(2 * (self.n + len(keys)))
        mask = len(self.keys) - 1
        pos = self._slots(keys)
        active = np.arange(len(keys))
        while active.size:
            empty = active[self.vals[pos[active]] < 0]
            # Several keys may probe the same empty slot in one batch: the first of each takes it.
            _, first = np.unique(pos[empty], return_index=True)
            win = empty[first]
            self.keys[pos[win]], self.vals[pos[win]] = keys[win], vals[win]
            placed = np.zeros(len(keys), dtype=bool)
            placed[win] = True
            active = active[~placed[active]]
            pos[active] = (pos[active] + 1) & mask
        self.n += len(keys)

    def _grow(self, need: int) -> None:
        used = self.vals >= 0
        keys, vals = self.keys[used], self.vals[used]
        size = len(self.keys)
        while size < need:
            size *= 2
        self.keys = np.zeros(size, dtype=np.int64)
        self.vals = np.full(size, -1, dtype=np.int32)
        self.n = 0
        self.insert(keys, vals)


class DuplicateFinder:
    """Finds duplicates in priority order (the first of a cluster is kept).

    `signature` is pure and may run in worker processes; `find` keeps the index and must see the
    conversations in order. The LSH index is one `HashTable` for all bands (key = band key and band
    number) rather than datasketch's MinHashLSH: with its banding parameters (taken from datasketch) the
    lookups are the same, but its storage layer made insertion the slowest step of `data prepare`
    (~70 us per conversation), and Python dicts of a million keys per band outgrow the memory target.
    Kept sketches are stored as the low 16 bits of each MinHash value (256 bytes a conversation at 128
    permutations): two different values then agree with probability 1/65,536, which raises an estimated
    Jaccard similarity by at most 0.00002.
    """

    def __init__(self, cfg: DedupeConfig):
        from datasketch import MinHash, MinHashLSH

        self.cfg = cfg
        self._MinHash = MinHash
        # Permutations are drawn once; MinHash() would otherwise redraw them for every document.
        template = MinHash(num_perm=cfg.num_perm, seed=1)
        self._perms, self._scheme = template.permutations, template.scheme
        # LSH only proposes candidates; each is confirmed by its estimated Jaccard. datasketch's default
        # weights balance false positives against misses and so find only ~40% of the pairs right at the
        # threshold; weighting misses 9:1 finds ~87% there and ~98% at +0.05, for a few more confirmations.
        lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, weights=(0.1, 0.9))
        self.bands, self.rows = lsh.b, lsh.r
        # One random odd 64-bit multiplier per row: a band's key is the wrapped dot product of its rows.
        rng = np.random.default_rng(0)
        self._mix = rng.integers(1, 2**63, size=(self.bands, self.rows), dtype=np.uint64) * 2 + 1
        self.exact = HashTable()
        self.lsh = HashTable()
        self.kept_keys: list[Any] = []  # slot -> the caller's key of each kept conversation
        self.sketches = np.zeros((1024, cfg.num_perm), dtype=np.uint16)  # slot -> low bits of its MinHash

    def add(self, key: Any, messages: Sequence[Message]) -> tuple[Any, str] | None:
        """Register one conversation; returns (kept key, "exact_duplicate" | "near_duplicate") if it
        duplicates an earlier one."""
        return self.find([key], [self.signature(normalised_text(messages))])[0]

    def signature(self, text: str) -> tuple[bytes | None, bytes | None]:
        """(exact hash, MinHash values as uint16 bytes) of a `normalised_text`, each None when that check
        is off. Bytes rather than an array: they cross process boundaries and spool files ~3x cheaper."""
        exact = text_hash(text) if self.cfg.exact else None
        return exact, self.sketch(text).hashvalues.astype(np.uint16).tobytes() if self.cfg.near else None

    def find(
        self, keys: list[Any], signatures: list[tuple[bytes | None, bytes | None]]
    ) -> list[tuple[Any, str] | None]:
        """Register conversations in order; for each, (kept key, kind) of what it duplicates, or None.
        Earlier batches are looked up in the tables at once; within the batch a small dict links each
        conversation to the ones before it."""
        n = len(keys)
        if not n:
            return []
        exact_keys = np.array(
            [int.from_bytes(e[:8], "little", signed=True) if e is not None else 0 for e, _ in signatures],
            dtype=np.int64,
        )
        exact_before: dict[int, int] = {}
        if self.cfg.exact:
            q, v = self.exact.lookup(exact_keys)
            # query position -> slot; zipped in reverse so the first stored (the earliest kept) wins
            exact_before = dict(zip(q[::-1].tolist(), v[::-1].tolist(), strict=True))
        band_keys = np.zeros((n, self.bands), dtype=np.int64)
        near_before: dict[int, set[int]] = {}
        sk16: Any = None
        if self.cfg.near:
            sk16 = np.frombuffer(b"".join(hv or b"" for _, hv in signatures), dtype=np.uint16)
            sk16 = sk16.reshape(n, self.cfg.num_perm)
            sk = sk16.astype(np.uint64)
            cut = sk[:, : self.bands * self.rows].reshape(n, self.bands, self.rows)
            mixed = (cut * self._mix).sum(axis=2)  # uint64 arithmetic wraps, as a hash should
            # 30 bits of band key, then the band number, so one table holds every band.
            band_keys = ((mixed >> np.uint64(34)).astype(np.int64) << 4) | np.arange(
                self.bands, dtype=np.int64
            )
            q, v = self.lsh.lookup(band_keys.ravel())
            for row, slot in zip((q // self.bands).tolist(), v.tolist(), strict=True):
                near_before.setdefault(row, set()).add(slot)
        exact_here: dict[int, int] = {}
        near_here: dict[int, list[int]] = {}
        new_rows: list[int] = []
        found: list[tuple[Any, str] | None] = []
        for j in range(n):
            e, near = signatures[j]
            hv = sk16[j] if near is not None else None
            if e is not None:
                slot = exact_before.get(j, exact_here.get(int(exact_keys[j]), -1))
                if slot >= 0:
                    found.append((self.kept_keys[slot], "exact_duplicate"))
                    continue
            dup = None
            if hv is not None:
                bands = band_keys[j].tolist()
                cands = near_before.get(j, set()).union(*(near_here.get(b, ()) for b in bands))
                for slot in sorted(cands):
                    if self.jaccard(hv, self.sketches[slot]) >= self.cfg.threshold:
                        dup = slot
                        break
            if dup is not None:
                found.append((self.kept_keys[dup], "near_duplicate"))
                continue
            slot = len(self.kept_keys)
            self.kept_keys.append(keys[j])
            if hv is not None:
                if slot >= len(self.sketches):
                    self.sketches = np.concatenate([self.sketches, np.zeros_like(self.sketches)])
                self.sketches[slot] = hv
                for b in bands:
                    near_here.setdefault(b, []).append(slot)
            if e is not None:
                exact_here[int(exact_keys[j])] = slot
            new_rows.append(j)
            found.append(None)
        rows = np.array(new_rows, dtype=np.int64)
        slots = np.arange(len(self.kept_keys) - len(rows), len(self.kept_keys), dtype=np.int32)
        if self.cfg.exact and len(rows):
            self.exact.insert(exact_keys[rows], slots)
        if self.cfg.near and len(rows):
            self.lsh.insert(band_keys[rows].ravel(), np.repeat(slots, self.bands))
        return found

    @staticmethod
    def jaccard(a: Any, b: Any) -> float:
        """The Jaccard similarity two MinHash signatures estimate: the share of equal values."""
        return float(np.count_nonzero(a == b)) / len(a)

    def sketch(self, text: str) -> Any:
        # crc32 (C) instead of datasketch's default SHA-1 wrapper: ~20x cheaper per shingle, and the
        # MinHash scheme mixes every 32-bit value (fmix) before permuting, so its quality is enough.
        m = self._MinHash(
            num_perm=self.cfg.num_perm, permutations=self._perms, scheme=self._scheme, hashfunc=zlib.crc32
        )
        m.update_batch(list(shingles(text)))
        return m
