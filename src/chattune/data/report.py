"""The data-preparation report: PNG plots, one self-contained report.html, and a compact terminal table.

write_report(output_dir, result, stats)                    # called by prepare.run
print_summary(result, console)                              # the table `chattune data prepare` ends with
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chattune.report import figure, page

if TYPE_CHECKING:
    from rich.console import Console

    from chattune.data.results import Inspection, PrepareResult, Stats


def write_report(out: Path, result: PrepareResult, stats: Stats) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    pngs: dict[str, Path] = {}

    def save(name: str, fig: Any) -> None:
        fig.tight_layout()
        fig.savefig(plots / f"{name}.png", dpi=90)
        plt.close(fig)
        pngs[name] = plots / f"{name}.png"

    fig, ax = plt.subplots(figsize=(7, 3.5))
    after = stats.tokens_after
    if stats.tokens_before or after:
        import numpy as np

        # shared, so the two compare; as a list of floats (what matplotlib's annotations take)
        bins = np.histogram_bin_edges([*stats.tokens_before, *after], bins=40).tolist()
        ax.hist(
            stats.tokens_before,
            bins=bins,
            alpha=0.5,
            label=f"before outliers/dedupe ({len(stats.tokens_before)})",
        )
        ax.hist(after, bins=bins, alpha=0.5, label=f"kept ({len(after)})")
        ax.axvline(
            result.stats["max_length"], color="k", linestyle="--", linewidth=1, label="data.max_length"
        )
        ax.legend()
    ax.set(xlabel="tokens per conversation", ylabel="conversations", title="Token lengths")
    save("token_lengths", fig)

    if stats.scope_scores is not None and len(stats.scope_scores):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.hist(stats.scope_scores, bins=60, color="tab:blue")
        th = stats.scope["threshold"]
        ax.axvline(
            th, color="tab:red", linestyle="--", label=f"threshold {th:.3f} ({stats.scope['below']} below)"
        )
        ax.set(xlabel="scope score", ylabel="conversations", title="Scope scores", yscale="log")
        ax.legend()
        save("scope", fig)

    for name, counter, title in (
        ("drops", result.drops, "Dropped records by reason"),
        ("fixes", result.fixes, "Fixed records by kind"),
        ("languages", stats.languages, "Detected languages"),
        ("roles", stats.kept_roles, "Messages by role (kept)"),
        ("turns", stats.kept_turns, "Messages per conversation (kept)"),
    ):
        if not counter:
            continue
        pairs = sorted(counter.items(), key=lambda kv: kv[0]) if name == "turns" else counter.most_common(20)
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(pairs) + 1.2))
        ax.barh([str(k) for k, _ in pairs][::-1], [v for _, v in pairs][::-1])
        ax.set(title=title, xlabel="count")
        save(name, fig)

    (out / "report.html").write_text(_html(result, stats, pngs), encoding="utf-8")
    return out / "report.html"


def _html(result: PrepareResult, stats: Stats, pngs: dict[str, Path]) -> str:
    e = html.escape
    s = result.stats

    def table(rows: list[tuple[Any, ...]], head: tuple[str, ...]) -> str:
        th = "".join(f"<th>{e(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
        return f"<table><tr>{th}</tr>{body}</table>"

    def img(name: str) -> str:
        return figure(pngs[name], name) if name in pngs else ""

    parts = [
        "<h1>Data preparation report</h1>",
        f"<p><b>{s['input']}</b> records in = <b>{s['kept']}</b> kept ({s['fixed']} fixed) + <b>{s['dropped']}</b> dropped. "
        f"{s['train_rows']} train rows, {s['val_rows']} validation rows.</p>",
        "<h2>Token lengths</h2>",
        img("token_lengths"),
        table(
            [
                (k, *(round(v, 1) for v in s[k].values()))
                for k in ("tokens_per_conversation", "assistant_tokens", "messages_per_conversation")
            ],
            ("", "min", "max", "mean", "median", "p5", "p95"),
        ),
        f"<p>{s['over_max_length']} conversations longer than max_length {s['max_length']}; "
        f"{s['missing_system']} without a system message, {s['missing_user']} without a user message.</p>",
        f"<p>OpenAI fine-tuning default: {s['openai']['epochs']} epochs, about {s['openai']['billed_tokens']:,} billed tokens.",
    ]
    est = s.get("local_training_estimate")
    if est:
        parts.append(
            f" Local training estimate: ~{est['seconds'] / 60:.1f} min on {e(est['device'])} ({est['params'] / 1e6:.0f}M parameters)."
        )
    parts += [
        "</p><h2>Drops and fixes</h2>",
        img("drops"),
        img("fixes"),
        table(
            sorted(s["validation_categories"].items(), key=lambda kv: -kv[1]),
            ("validation category", "records"),
        ),
        table(list(s["pii"].items()), ("PII kind", "replaced")) if s["pii"] else "",
        table(list(s["glossary"].items()), ("glossary term", "replacements")) if s["glossary"] else "",
        *_scope_section(stats, img),
        "<h2>Roles, turns, languages</h2>",
        img("roles"),
        img("turns"),
        img("languages"),
        "<h2>Largest duplicate clusters</h2>",
    ]
    rows = stats.top_clusters
    parts.append(
        table(rows, ("kept", "duplicates", "first message", "some duplicates")) if rows else "<p>none</p>"
    )
    leak = s["leakage"]
    parts.append(
        f"<h2>Train/validation leakage</h2><p>{leak['same_conversation']} validation conversations also in train; "
        f"{leak['same_prompt']} share their first user prompt with a training conversation.</p>"
    )
    parts.append("<h2>Examples of each fix</h2>")
    for kind, examples in stats.examples.items():
        parts.append(f"<h3>{e(kind)}</h3>")
        parts.append(
            "<table><tr><th>before</th><th>after</th></tr>"
            + "".join(f"<tr><td><pre>{e(b)}</pre></td><td><pre>{e(a)}</pre></td></tr>" for b, a in examples)
            + "</table>"
        )
    return page("chattune data report", "\n".join(parts))


def _scope_section(stats: Stats, img: Any) -> list[str]:
    """The scope histogram and the records nearest the threshold on both sides, to judge it by eye."""
    if not stats.scope:
        return []
    e = html.escape
    sc = stats.scope
    how = f"calibrated on this data: {sc['how']}" if sc["calibrated"] else sc["how"]
    verb = "dropped" if sc["action"] == "drop" else "flagged for review (kept)"
    rows = "".join(
        f"<tr><td>{'below' if score < sc['threshold'] else 'above'}</td><td>{score:.3f}</td>"
        f"<td>{e(where)}</td><td><pre>{e(preview)}</pre></td></tr>"
        for where, score, preview in stats.scope_borderline
    )
    return [
        "<h2>Scope</h2>",
        f"<p>Threshold {sc['threshold']:.3f} ({e(how)}); {sc['below']} of {sc['scored']} conversations below it, {verb}.</p>",
        img("scope"),
        "<h3>Borderline records (nearest the threshold, both sides)</h3>",
        f"<table><tr><th>side</th><th>score</th><th>record</th><th>text</th></tr>{rows}</table>",
    ]


def print_summary(result: PrepareResult, console: Console) -> None:
    from rich.table import Table

    s = result.stats
    t = Table(title=f"data prepare -> {result.output_dir}", show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("count", justify="right")
    t.add_row("input records", str(result.n_input))
    t.add_row("kept", f"{result.n_kept} ({result.n_fixed} fixed)")
    t.add_row("dropped", str(result.n_dropped))
    for reason, n in result.drops.most_common():
        t.add_row(f"  {reason}", str(n), style="dim")
    for kind, n in result.fixes.most_common():
        t.add_row(f"  fixed: {kind}", str(n), style="dim")
    t.add_row("train / val rows", f"{result.n_train} / {result.n_val}")
    tok = s["tokens_per_conversation"]
    t.add_row("tokens (median / p95 / max)", f"{tok['median']:.0f} / {tok['p95']:.0f} / {tok['max']:.0f}")
    t.add_row(f"over max_length {s['max_length']}", str(s["over_max_length"]))
    t.add_row("OpenAI epochs / billed tokens", f"{s['openai']['epochs']} / {s['openai']['billed_tokens']:,}")
    if s.get("local_training_estimate"):
        est = s["local_training_estimate"]
        t.add_row("local training estimate", f"~{est['seconds'] / 60:.1f} min ({est['device']})")
    t.add_row("val leakage (same prompt)", str(s["leakage"]["same_prompt"]))
    console.print(t)


def print_inspection(ins: Inspection, console: Console) -> None:
    from rich.table import Table

    t = Table(title=f"{ins.path}: {ins.records} records, {ins.valid} structurally valid", header_style="bold")
    t.add_column("check")
    t.add_column("records", justify="right")
    t.add_column("first occurrence")
    for cat, n in ins.categories.most_common():
        t.add_row(cat, str(n), ins.first_errors.get(cat, ""))
    if not ins.categories:
        t.add_row("no format errors", "0", "")
    t.add_row(
        "render round-trip failures",
        str(ins.roundtrip_failures),
        "assistant mask empty or end-of-turn token not trained",
    )
    console.print(t)
    s = ins.stats
    st = Table(title="statistics (model tokenizer)", header_style="bold")
    for col in ("", "min", "max", "mean", "median", "p5", "p95"):
        st.add_column(col, justify="right" if col else "left")
    for name, values in (
        ("messages / conversation", s["messages_per_conversation"]),
        ("tokens / conversation", s["tokens_per_conversation"]),
        ("assistant tokens", ins.assistant_tokens),
    ):
        st.add_row(
            name, *(f"{v:.1f}" if isinstance(v, float) and v % 1 else f"{v:.0f}" for v in values.values())
        )
    console.print(st)
    console.print(
        f"{s['over_max_length']} over max_length {s['max_length']}; {s['missing_system']} without a system message, "
        f"{s['missing_user']} without a user message. OpenAI default: {s['openai']['epochs']} epochs, "
        f"~{s['openai']['billed_tokens']:,} billed tokens."
    )
