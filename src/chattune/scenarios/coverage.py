"""Coverage report: how a set of conversations spreads over categories, intents and personas.

    report = coverage(conversations, CATEGORIES, target=30)
    report.print(console); report.write(out_dir)   # coverage.html (with the chart), coverage.png, coverage.json

Per category: conversations, share, distinct phrasings (different user wording) and near-duplicates
(conversations whose user turns have an estimated word-3-gram Jaccard similarity above the threshold
with another one in the same category, found with datasketch's MinHash LSH). A warning for every
category that is missing or thin (fewer than thin_fraction x target).
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, JustifyMethod
from rich.table import Table

from chattune.data.conversation import Conversation
from chattune.report import figure, page


@dataclass
class CategoryRow:
    category: str
    conversations: int
    share: float
    distinct_phrasings: int
    near_duplicates: int
    status: str  # ok | thin | missing | extra


@dataclass
class CoverageReport:
    total: int
    target: int
    categories: list[CategoryRow]
    intents: dict[str, int]
    personas: dict[str, int]
    generators: dict[str, int]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def print(self, console: Console) -> None:
        table = Table(title=f"Coverage: {self.total} conversations (target {self.target} per category)")
        columns: list[tuple[str, JustifyMethod]] = [
            ("category", "left"),
            ("conversations", "right"),
            ("share", "right"),
            ("distinct phrasings", "right"),
            ("near-duplicates", "right"),
            ("status", "left"),
        ]
        for col, justify in columns:
            table.add_column(col, justify=justify)
        colour = {"ok": "green", "thin": "yellow", "missing": "bold red", "extra": "cyan"}
        for r in self.categories:
            table.add_row(
                r.category,
                str(r.conversations),
                f"{r.share:.1%}",
                str(r.distinct_phrasings),
                str(r.near_duplicates),
                f"[{colour[r.status]}]{r.status}[/]",
            )
        console.print(table)
        for title, counts in (("intent", self.intents), ("persona", self.personas)):
            if counts:
                t = Table(title=f"per {title}")
                t.add_column(title)
                t.add_column("conversations", justify="right")
                for name, n in counts.items():
                    t.add_row(name, str(n))
                console.print(t)
        for w in self.warnings:
            console.print(f"[yellow]warning:[/] {w}", highlight=False)

    def write(self, out_dir: Path) -> dict[str, Path]:
        """coverage.json, coverage.png and coverage.html (the chart embedded, so the page stands alone)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": out_dir / "coverage.json",
            "png": out_dir / "coverage.png",
            "html": out_dir / "coverage.html",
        }
        paths["json"].write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        self._chart(paths["png"])
        paths["html"].write_text(self._html(paths["png"].read_bytes()), encoding="utf-8")
        return paths

    def _chart(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt

        colour = {"ok": "#3b8f5a", "thin": "#e0a030", "missing": "#c0392b", "extra": "#4a7fb5"}
        rows = list(reversed(self.categories))
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
        ax.barh(
            [r.category for r in rows],
            [r.conversations for r in rows],
            color=[colour[r.status] for r in rows],
        )
        ax.axvline(self.target, color="#555", linestyle="--", linewidth=1, label=f"target {self.target}")
        for i, r in enumerate(rows):
            ax.text(r.conversations, i, f" {r.conversations} ({r.share:.0%})", va="center", fontsize=8)
        ax.set_xlabel("conversations")
        ax.set_title("Scenario coverage per category")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)

    def _html(self, png: bytes) -> str:
        esc = html.escape
        rows = "".join(
            f"<tr class='{r.status}'><td>{esc(r.category)}</td><td>{r.conversations}</td><td>{r.share:.1%}</td>"
            f"<td>{r.distinct_phrasings}</td><td>{r.near_duplicates}</td><td>{r.status}</td></tr>"
            for r in self.categories
        )

        def counts(title: str, c: dict[str, int]) -> str:
            body = "".join(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in c.items())
            return (
                f"<h2>Per {title}</h2><table><tr><th>{title}</th><th>conversations</th></tr>{body}</table>"
                if c
                else ""
            )

        warnings = "".join(f"<li>{esc(w)}</li>" for w in self.warnings) or "<li>none</li>"
        css = "td,th{text-align:right}td:first-child,th:first-child{text-align:left}tr.thin{background:#fff4dd}tr.missing{background:#fde2e0}"
        body = f"""<h1>Scenario coverage</h1><p>{self.total} conversations; target {self.target} per category.</p>
{figure(png, "conversations per category")}
<h2>Per category</h2><table><tr><th>category</th><th>conversations</th><th>share</th><th>distinct phrasings</th>
<th>near-duplicates</th><th>status</th></tr>{rows}</table>
<h2>Warnings</h2><ul>{warnings}</ul>
{counts("intent", self.intents)}{counts("persona", self.personas)}{counts("generator", self.generators)}"""
        return page("chattune scenario coverage", body, css=css)


def _user_text(conv: Conversation) -> str:
    return " | ".join(m.content for m in conv.messages if m.role == "user")


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def near_duplicates(texts: list[str], threshold: float, num_perm: int = 64) -> int:
    """How many texts have at least one other text above `threshold` estimated Jaccard similarity."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    hashes = []
    for i, text in enumerate(texts):
        words = _normalise(text).split()
        shingles = {" ".join(words[j : j + 3]) for j in range(max(1, len(words) - 2))}
        mh = MinHash(num_perm=num_perm, seed=1)
        mh.update_batch([s.encode("utf-8") for s in shingles])
        lsh.insert(str(i), mh)
        hashes.append(mh)
    return sum(len(lsh.query(mh)) > 1 for mh in hashes)


def coverage(
    conversations: list[Conversation],
    categories: tuple[str, ...] | list[str],
    *,
    target: int,
    thin_fraction: float = 0.5,
    near_duplicate_threshold: float = 0.8,
) -> CoverageReport:
    by_cat: dict[str, list[Conversation]] = {c: [] for c in categories}
    for conv in conversations:
        by_cat.setdefault(str(conv.meta.get("category", "uncategorised")), []).append(conv)
    total = len(conversations)
    rows, warnings = [], []
    for cat, convs in by_cat.items():
        n = len(convs)
        texts = [_user_text(c) for c in convs]
        if cat not in categories:
            status = "extra"
        elif n == 0:
            status = "missing"
            warnings.append(
                f"category {cat} is missing: the spec gives the template engine nothing to build it from"
            )
        elif n < thin_fraction * target:
            status = "thin"
            warnings.append(
                f"category {cat} is thin: {n} conversations, target {target}; add phrasings, slots or items to the spec"
            )
        else:
            status = "ok"
        dups = near_duplicates(texts, near_duplicate_threshold) if n > 1 else 0
        distinct = len({_normalise(t) for t in texts})
        if n and dups > n / 2:
            warnings.append(
                f"category {cat}: {dups} of {n} conversations are near-duplicates; add more varied phrasings"
            )
        rows.append(CategoryRow(cat, n, n / total if total else 0.0, distinct, dups, status))

    def count(key: str) -> dict[str, int]:
        return dict(Counter(str(c.meta[key]) for c in conversations if c.meta.get(key)).most_common())

    return CoverageReport(
        total, target, rows, count("intent"), count("persona"), count("generator"), warnings
    )
