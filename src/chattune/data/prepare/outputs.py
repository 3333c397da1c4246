"""The last pass of `data prepare`: every record in input order to train/val, the ledger or the
quarantine file, and the statistics of what was kept (stats.json)."""

from __future__ import annotations

import json
import random
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from chattune.config.prepare import PrepareConfig
from chattune.data.conversation import ROLES
from chattune.data.prepare.records import Record, Sources, spool_read
from chattune.data.prepare.whole_set import split_plan
from chattune.data.results import PrepareResult, Stats
from chattune.data.validate import openai_estimate, token_stats
from chattune.hardware import training_time_estimate


@dataclass
class Survivors:
    """What the second pass learned about the records it kept: the split and the report need it."""

    alive_per_source: Counter[int] = field(default_factory=Counter)
    clusters: dict[int, list[int]] = field(default_factory=dict)  # kept key -> its first few duplicates
    cluster_sizes: Counter[int] = field(default_factory=Counter)  # kept key -> number of duplicates


ROLE_NAMES = {r[0]: r for r in ROLES}


class KeptStats:
    """Statistics of the kept conversations, accumulated one at a time."""

    def __init__(self) -> None:
        self.tokens, self.trained, self.turns = array("i"), array("i"), array("i")
        self.train_lengths = array("i")  # one per training row (mixing copies included)
        self.missing_system = self.missing_user = 0
        self.roles: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.hashes: dict[str, array[int]] = {k: array("q") for k in ("train", "val", "train_p", "val_p")}
        self.val_keys = array("q")  # validation rows, for the leakage examples

    def add(self, row: Record, source: str) -> None:
        self.tokens.append(row.tokens)
        self.trained.append(row.trained)
        self.turns.append(len(row.roles))
        self.roles.update(ROLE_NAMES[r] for r in row.roles)
        self.missing_system += "s" not in row.roles
        self.missing_user += "u" not in row.roles
        self.by_source[source] += 1
        split = row.split or "train"
        self.hashes[split].append(int.from_bytes(row.digest[:8], "little", signed=True))
        self.hashes[f"{split}_p"].append(int.from_bytes(row.prompt[:8], "little", signed=True))
        if split == "train":
            self.train_lengths.extend([row.tokens] * row.copies)
        else:
            self.val_keys.append(row.key)

    def leakage(self, sources: Sources) -> dict[str, Any]:
        """Validation conversations whose first user prompt (normalised) or whole text also appears in train."""
        arr = {k: np.frombuffer(v, dtype=np.int64) for k, v in self.hashes.items()}
        conv = np.isin(arr["val"], arr["train"])
        prompt = np.isin(arr["val_p"], arr["train_p"])
        examples = [sources.text(self.val_keys[i]) for i in np.flatnonzero(prompt)[:5]]
        return {"same_conversation": int(conv.sum()), "same_prompt": int(prompt.sum()), "examples": examples}


def write_outputs(
    cfg: PrepareConfig,
    sources: Sources,
    survivors: Survivors,
    stats: Stats,
    spool: Path,
    *,
    max_length: int,
    epochs: float,
    n_params: int | None,
) -> PrepareResult:
    out = cfg.output_dir
    plan = split_plan(cfg, survivors.alive_per_source)
    rngs = {s: random.Random(f"{cfg.split.seed}/{cfg.sources[s].name}/weight") for s in plan}
    seen: Counter[int] = Counter()
    rows_out = {"train": 0, "val": 0}
    drops: Counter[str] = Counter()
    fixes: Counter[str] = Counter()
    kept = KeptStats()
    top = {k for k, _ in survivors.cluster_sizes.most_common(5)}
    first_message: dict[int, str] = {}
    n_kept = n_fixed = n_flagged = n_input = 0
    with (
        (out / "train.jsonl").open("w", encoding="utf-8") as train_fh,
        (out / "val.jsonl").open("w", encoding="utf-8") as val_fh,
        (out / "ledger.jsonl").open("w", encoding="utf-8") as ledger_fh,
        (out / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine_fh,
    ):
        for rows in spool_read(spool):
            for row in rows:
                n_input += 1
                s = row.key >> 40
                if row.key in top:
                    first_message[row.key] = next((m["content"] for m in row.messages), "")
                if row.alive:
                    pos = seen[s]
                    seen[s] += 1
                    row.split = "val" if pos in plan[s] else "train"
                    w = cfg.sources[s].weight
                    if row.split == "train" and w != 1.0:
                        row.copies = int(w) + (rngs[s].random() < w - int(w))
                        if row.copies == 0:
                            row.drop("mix_weight", f"not sampled at source weight {w}")
                entry: dict[str, Any] = sources.where(row.key)
                if row.alive:
                    split = row.split or "train"
                    entry.update(
                        status="fixed" if row.fixes else "kept", split=split, output_line=rows_out[split] + 1
                    )
                    (train_fh if split == "train" else val_fh).write(row.line * row.copies)
                    rows_out[split] += row.copies
                    if row.copies != 1:
                        entry["copies"] = row.copies
                    n_kept += 1
                    n_fixed += bool(row.fixes)
                    n_flagged += bool(row.flags)
                    fixes.update({f.split(":")[0] for f in row.fixes})
                    kept.add(row, sources.names[s])
                else:
                    entry.update(status="dropped", reason=row.reason, detail=row.detail)
                    if row.dup_of is not None:
                        entry["duplicate_of"] = sources.where(row.dup_of)
                    drops[row.reason or "?"] += 1
                    quarantine_fh.write(
                        json.dumps({**entry, "raw": row.raw}, ensure_ascii=False, default=str) + "\n"
                    )
                if row.fixes:
                    entry["fixes"] = row.fixes
                if row.flags:
                    entry["flags"] = row.flags
                ledger_fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    stats.top_clusters = [
        (
            sources.text(k),
            survivors.cluster_sizes[k],
            first_message.get(k, "")[:160],
            ", ".join(sources.text(d) for d in survivors.clusters[k]),
        )
        for k, _ in survivors.cluster_sizes.most_common(5)
    ]
    stats.kept_roles, stats.kept_turns = kept.roles, Counter(kept.turns)
    stats.tokens_after = kept.tokens
    oa_epochs, billed = openai_estimate(kept.train_lengths)
    summary_stats = {
        "input": n_input,
        "kept": n_kept,
        "fixed": n_fixed,
        "dropped": n_input - n_kept,
        "train_rows": rows_out["train"],
        "val_rows": rows_out["val"],
        "drops": dict(drops.most_common()),
        "fixes": dict(fixes.most_common()),
        "validation_categories": dict(stats.categories.most_common()),
        "pii": dict(stats.pii),
        "glossary": dict(stats.glossary),
        "languages": dict(stats.languages.most_common()),
        "scope": stats.scope,
        "flagged": n_flagged,
        "by_source": dict(kept.by_source),
        "duplicate_clusters": len(survivors.cluster_sizes),
        "leakage": kept.leakage(sources),
        "messages_per_conversation": token_stats(kept.turns),
        "tokens_per_conversation": token_stats(kept.tokens),
        "over_max_length": int(np.count_nonzero(np.frombuffer(kept.tokens, dtype=np.int32) > max_length)),
        "max_length": max_length,
        "missing_system": kept.missing_system,
        "missing_user": kept.missing_user,
        "assistant_tokens": token_stats(kept.trained),
        "openai": {"epochs": oa_epochs, "billed_tokens": billed},
        "local_training_estimate": training_time_estimate(sum(kept.train_lengths), epochs, n_params),
    }
    (out / "stats.json").write_text(json.dumps(summary_stats, indent=2), encoding="utf-8")
    return PrepareResult(
        out,
        n_input,
        n_kept,
        n_fixed,
        n_input - n_kept,
        rows_out["train"],
        rows_out["val"],
        drops,
        fixes,
        summary_stats,
    )
