"""The `data.prepare` section: which sources to read and how to clean, dedupe and split them.

    data:
      prepare:
        sources:
          - {path: raw/support.jsonl, tag: support}
          - {path: raw/faq.csv, columns: {prompt: question, response: answer}, weight: 0.5}
        output_dir: data/prepared

Every cleaning step can be switched off and has its parameters next to it. Defaults are safe: nothing
that changes meaning (language, scope, outliers) runs unless you configure it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from chattune.config.section import Section

FORMATS = ("auto", "openai", "sharegpt", "alpaca", "csv", "tsv", "parquet", "hf")


class ColumnMap(Section):
    prompt: str = Field("prompt", description="Column holding the user's message.")
    response: str = Field("response", description="Column holding the assistant's answer.")
    system: str | None = Field(None, description="Optional column holding a system prompt.")


class SourceConfig(Section):
    path: Path = Field(
        ..., description="A file (.jsonl, .json, .csv, .tsv, .parquet) or a `datasets.save_to_disk` folder."
    )
    format: Literal["auto", "openai", "sharegpt", "alpaca", "csv", "tsv", "parquet", "hf"] = Field(
        "auto", description="Record format; auto looks at the extension and the first record's keys."
    )
    tag: str | None = Field(
        None, description="Name of this source in the ledger, report and split (default: file stem)."
    )
    weight: float = Field(
        1.0,
        gt=0,
        description="Mixing ratio in the training split: 2.0 repeats each kept record twice, 0.5 keeps a seeded half.",
    )
    columns: ColumnMap | None = Field(
        None, description="Column mapping for CSV/TSV/Parquet/HF tables without messages."
    )
    hf_split: str | None = Field(
        None, description="Split to read when a datasets folder holds a DatasetDict (default: train)."
    )

    @property
    def name(self) -> str:
        return self.tag or self.path.stem


class TextConfig(Section):
    unicode: bool = Field(True, description="Repair mojibake and odd encodings with ftfy.")
    html: bool = Field(True, description="Turn HTML markup into plain text (only where tags are present).")
    whitespace: bool = Field(
        True, description="Drop zero-width and control characters, collapse runs of spaces and blank lines."
    )


class PiiConfig(Section):
    enabled: bool = Field(True, description="Replace personal data with typed placeholders such as [EMAIL].")
    email: bool = True
    phone: bool = True
    phone_regions: list[str] = Field(
        default_factory=lambda: ["US", "GB", "AU"],
        description="Countries whose national formats (no +country code) count as phone numbers; numbers "
        "with a country code are checked for their own country. Each added region adds look-alikes it accepts.",
    )
    credit_card: bool = Field(True, description="Card numbers that pass the Luhn check.")
    ip: bool = Field(True, description="IPv4 and IPv6 addresses.")
    url: bool = Field(False, description="Also replace URLs with [URL].")


class GlossaryConfig(Section):
    terms: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Preferred term -> variants, e.g. {error: [bug, defect, glitch], sign in: [log in, signin]}. "
        "Whole words, case preserved, never inside code spans or URLs.",
    )


class NoiseConfig(Section):
    enabled: bool = Field(True, description="Drop junk conversations (the reasons below).")
    min_chars: int = Field(2, ge=0, description="Drop when the assistant's text is shorter than this.")
    min_alpha_ratio: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Drop when fewer than this share of the non-space characters are letters or digits.",
    )
    max_repetition: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Drop when more than this share of a message's word 3-grams are repeats (needs >= 20 words).",
    )
    empty_turns: Literal["drop_conversation", "drop_turn"] = Field(
        "drop_conversation",
        description="A user/assistant turn with no text: drop the conversation, or remove the turn (and its pair).",
    )


class LanguageConfig(Section):
    keep: list[str] | None = Field(
        None, description="ISO 639-1 codes to keep, e.g. [en]. Unset: no language filter."
    )
    min_chars: int = Field(
        20, ge=1, description="Texts shorter than this are too short to identify and are kept."
    )


class ScopeConfig(Section):
    description: str | None = Field(
        None,
        description="What the data should be about. With it, conversations are scored by embedding similarity.",
    )
    keywords: list[str] = Field(
        default_factory=list, description="A conversation mentioning any of these (whole word) is in scope."
    )
    min_similarity: float | None = Field(
        None,
        ge=-1,
        le=1,
        description="A fixed threshold on the scope score. Unset (recommended): calibrated on the data set itself "
        "(the widest gap in the low tail of the scores, else median - mad_k robust sigmas), since a fixed "
        "similarity does not hold across data sets.",
    )
    mad_k: float = Field(
        6.0,
        gt=0,
        description="Calibrated threshold when the scores show no gap: how many robust standard deviations "
        "(1.4826 * MAD) below the median a conversation must fall to be off scope.",
    )
    centroid_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of the score taken from similarity to the data's own centroid (all-MiniLM-L6-v2); the "
        "rest is similarity to the description. The centroid covers in-domain themes the description misses.",
    )
    action: Literal["drop", "flag"] = Field(
        "drop",
        description="drop off-scope conversations, or flag them in the ledger and report for review and keep them.",
    )
    borderline: int = Field(
        10, ge=0, description="Records nearest the threshold shown in the report, on each side."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.description or self.keywords)


class OutlierConfig(Section):
    method: Literal["none", "iqr", "zscore"] = Field(
        "none", description="How to find length outliers on token counts."
    )
    k: float = Field(1.5, gt=0, description="iqr: above Q3 + k*IQR.")
    z: float = Field(3.0, gt=0, description="zscore: more than z standard deviations above the mean.")
    action: Literal["drop", "truncate"] = Field(
        "truncate",
        description="truncate removes whole turns from the front (keeping the system prompt and the final exchange); "
        "conversations still too long are dropped.",
    )


class DedupeConfig(Section):
    exact: bool = Field(
        True, description="Drop conversations whose normalised text hashes equal one already kept."
    )
    near: bool = Field(
        True, description="Drop near duplicates found with MinHash LSH (one kept per cluster)."
    )
    threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Estimated Jaccard similarity of word 3-gram shingles counted as near-duplicate.",
    )
    num_perm: int = Field(
        128, ge=16, le=512, description="MinHash permutations: more is more accurate and slower."
    )


class SplitConfig(Section):
    val_fraction: float = Field(0.05, ge=0, lt=1, description="Share of each source held out for validation.")
    seed: int = Field(42, description="Seeds the split and the mixing-ratio sampling.")


class PrepareConfig(Section):
    sources: list[SourceConfig] = Field(
        ..., min_length=1, description="The files to read, in priority order for duplicates."
    )
    output_dir: Path = Field(
        Path("data/prepared"),
        description="Where train.jsonl, val.jsonl, the ledger, quarantine and report go.",
    )
    text: TextConfig = Field(default_factory=TextConfig)
    pii: PiiConfig = Field(default_factory=PiiConfig)
    glossary: GlossaryConfig = Field(default_factory=GlossaryConfig)
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    language: LanguageConfig = Field(default_factory=LanguageConfig)
    scope: ScopeConfig = Field(default_factory=ScopeConfig)
    outliers: OutlierConfig = Field(default_factory=OutlierConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    roundtrip: bool = Field(
        True,
        description="Render every kept conversation with the chat template and check the assistant mask and end-of-turn token.",
    )
    report: bool = Field(True, description="Write report.html and PNG plots.")

    @model_validator(mode="after")
    def _unique_tags(self) -> PrepareConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source tags must be unique (set tag:), repeated: {', '.join(dupes)}")
        return self
