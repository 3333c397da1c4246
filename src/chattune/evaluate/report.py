"""The evaluation, for people: a summary table in the terminal and a single-file HTML report.

    write_report(Path("runs/quickstart/eval/report.html"), metrics, records)
    print_summary(metrics, console)

The report holds the metric table with deltas, the same per category, a bar chart per category, a latency
histogram, the items the fine-tune improved and hurt most with both answers side by side, and every item.
Plots are matplotlib PNGs embedded as base64, so the file can be mailed or attached to a ticket as is.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from chattune.config import METRICS
from chattune.evaluate.metrics import HIGHER_IS_BETTER
from chattune.report import figure, page

# Rows of the overall table, in reading order; keys that are None for every model are skipped.
OVERALL_KEYS = [
    "score",
    "rubric_pass",
    "rubric_checks",
    "behavior_pass",
    "exact_match",
    "rouge_l",
    "chrf",
    "bleu",
    "judge_score",
    "answer_words",
    "answer_tokens",
    "truncated_rate",
    "ttft_p50",
    "ttft_p95",
    "latency_p50",
    "latency_p95",
    "tokens_per_s_p50",
    "tokens_per_s_p95",
    "val_loss",
    "val_perplexity",
    "val_token_accuracy",
]
CATEGORY_KEYS = ["score", "rubric_pass", "behavior_pass", "rouge_l", "chrf", "latency_p50"]
TERMINAL_CATEGORY_KEYS = [
    "score",
    "rubric_pass",
    "behavior_pass",
    "rouge_l",
    "latency_p50",
]  # fits 80 columns
CHART_KEYS = ["score", "rubric_pass", "behavior_pass", "rouge_l"]
LABELS = {name: m.label for name, m in METRICS.items()}
SHORT = {
    "score": "score",
    "rubric_pass": "rubric",
    "behavior_pass": "behaviour",
    "rouge_l": "ROUGE-L",
    "chrf": "chrF",
    "latency_p50": "p50 s",
}
N_EXTREMES = 5


def fmt(key: str, value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "–"
    sign = "+" if signed else ""
    if key in ("chrf", "bleu", "answer_words", "answer_tokens") or key.startswith("tokens_per_s"):
        return f"{value:{sign}.1f}"
    if key in ("val_perplexity",):
        return f"{value:{sign}.2f}"
    return f"{value:{sign}.3f}"


def verdict(key: str, d: float | None) -> str:
    """'better', 'worse' or '' for a delta, by the metric's direction."""
    direction = HIGHER_IS_BETTER.get(key)
    if d is None or direction is None or abs(d) < 1e-12:
        return ""
    return "better" if (d > 0) == direction else "worse"


def _present(metrics: dict[str, Any], keys: list[str]) -> list[str]:
    blocks = [metrics["finetuned"]["overall"]] + ([metrics["base"]["overall"]] if metrics["base"] else [])
    return [k for k in keys if any(b.get(k) is not None for b in blocks)]


# ----------------------------------------------------------------------------------------------------
# Terminal


def _colored(key: str, d: float | None) -> str:
    style = {"better": "green", "worse": "red"}.get(verdict(key, d))
    return f"[{style}]{fmt(key, d, signed=True)}[/]" if style else fmt(key, d, signed=True)


def print_summary(metrics: dict[str, Any], console: Console) -> None:
    has_base = metrics["base"] is not None
    table = Table(
        title=f"eval: {metrics['models']['finetuned']} ({metrics['n_items']} items)", title_justify="left"
    )
    table.add_column("metric")
    table.add_column("fine-tuned", justify="right")
    if has_base:
        table.add_column(f"base ({metrics['models']['base']})", justify="right")
        table.add_column("Δ", justify="right")
    ft = metrics["finetuned"]["overall"]
    for key in _present(metrics, OVERALL_KEYS):
        row = [LABELS.get(key, key), fmt(key, ft.get(key))]
        if has_base:
            d = metrics["delta"]["overall"].get(key)
            row += [
                fmt(key, metrics["base"]["overall"].get(key)),
                _colored(key, d),
            ]
        table.add_row(*row)
    console.print(table)

    cats = Table(title="per category", title_justify="left")
    keys = _present(metrics, TERMINAL_CATEGORY_KEYS)
    cat_width = min(18, max(len(c) for c in metrics["finetuned"]["per_category"]))
    cats.add_column("category", min_width=cat_width, overflow="fold")
    for col in ["n", "model", *(SHORT.get(k, k) for k in keys)]:
        cats.add_column(
            col, justify="left" if col in ("category", "model") else "right", no_wrap=col != "category"
        )
    for cat, block in metrics["finetuned"]["per_category"].items():
        cats.add_row(cat, str(int(block["n_items"])), "tuned", *(fmt(k, block.get(k)) for k in keys))
        if has_base:
            b, d = metrics["base"]["per_category"][cat], metrics["delta"]["per_category"][cat]
            cats.add_row("", "", "base", *(fmt(k, b.get(k)) for k in keys))
            cats.add_row("", "", "Δ", *(_colored(k, d.get(k)) for k in keys), end_section=True)
    console.print(cats)
    if metrics.get("general"):
        console.print(general_line(metrics["general"]))


def general_line(general: dict[str, Any]) -> str:
    """One sentence on general ability kept (general.py), for the terminal and the report."""
    n, right = general["questions"], general["finetuned_right"]
    if general["base_right"] is None:
        return f"general questions (no system prompt): {right} of {n} right"
    if general["kept"] is None:
        return f"general questions (no system prompt): {right} of {n} right; the base answered none right"
    base_right, lost = general["base_right"], len(general["lost"])
    return (
        f"general ability kept (no system prompt): {general['kept']:.0%}, {base_right - lost} of the "
        f"{base_right} questions the base answered right ({lost} lost, {general['gained']} gained; "
        f"{right} of {n} right against the base's {base_right})"
    )


# ----------------------------------------------------------------------------------------------------
# HTML


def _png(fig: Any) -> str:
    return figure(fig)


def _short(name: str) -> str:
    tail = Path(name).name or name
    return tail if len(tail) <= 32 else tail[:31] + "…"


def category_chart(metrics: dict[str, Any]) -> str:
    """One panel per metric, categories on the x axis, fine-tuned and base side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = _present(metrics, CHART_KEYS)
    if not keys:
        return ""
    models = [m for m in ("finetuned", "base") if metrics[m]]
    cats = list(metrics["finetuned"]["per_category"])
    ncols = 2 if len(keys) > 1 else 1
    nrows = -(-len(keys) // ncols)
    panel_w = max(4.5, 0.9 * len(cats) + 1.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_w * ncols, 2.8 * nrows), squeeze=False)
    for ax in axes.flat[len(keys) :]:
        ax.set_visible(False)
    width = 0.8 / len(models)
    for ax, key in zip(axes.flat, keys, strict=False):
        for j, m in enumerate(models):
            vals = [metrics[m]["per_category"][c].get(key) for c in cats]
            xs = [i + (j - (len(models) - 1) / 2) * width for i in range(len(cats))]
            ax.bar(
                xs,
                [v if v is not None else 0 for v in vals],
                width,
                label=f"base: {_short(metrics['models']['base'])}" if m == "base" else "fine-tuned",
            )
        ax.set_xticks(range(len(cats)), cats, rotation=20, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_title(LABELS.get(key, key), fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(models), fontsize=9)
    return _png(fig)


def latency_chart(records: list[dict[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in ("finetuned", "base") if records and m in records[0]]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3))
    for ax, key, title in zip(
        axes, ("latency", "ttft"), ("latency per answer (s)", "time to first token (s)"), strict=True
    ):
        series = [[r[m][key] for r in records if r[m].get(key) is not None] for m in models]
        ax.hist(
            series,
            bins=min(20, max(5, len(records) // 2)),
            label=["fine-tuned" if m == "finetuned" else "base" for m in models],
        )
        ax.set_title(title, fontsize=10, loc="left")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _metric_table(metrics: dict[str, Any]) -> str:
    has_base = metrics["base"] is not None
    head = (
        "<tr><th>metric</th><th>fine-tuned</th>" + ("<th>base</th><th>Δ</th>" if has_base else "") + "</tr>"
    )
    rows = []
    for key in _present(metrics, OVERALL_KEYS):
        cells = f"<td>{html.escape(LABELS.get(key, key))}</td><td>{fmt(key, metrics['finetuned']['overall'].get(key))}</td>"
        if has_base:
            d = metrics["delta"]["overall"].get(key)
            cells += f"<td>{fmt(key, metrics['base']['overall'].get(key))}</td><td class='{verdict(key, d)}'>{fmt(key, d, signed=True)}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _category_table(metrics: dict[str, Any]) -> str:
    has_base = metrics["base"] is not None
    keys = _present(metrics, CATEGORY_KEYS)
    head = (
        "<tr><th>category</th><th>n</th>"
        + "".join(f"<th>{html.escape(LABELS.get(k, k))}</th>" for k in keys)
        + "</tr>"
    )
    rows = []
    for cat, block in metrics["finetuned"]["per_category"].items():
        cells = f"<td>{html.escape(cat)}</td><td>{int(block['n_items'])}</td>"
        for key in keys:
            cell = fmt(key, block.get(key))
            if has_base:
                d = metrics["delta"]["per_category"][cat].get(key)
                cell += (
                    f" <span class='dim'>/ {fmt(key, metrics['base']['per_category'][cat].get(key))}</span>"
                )
                cell += (
                    f" <span class='{verdict(key, d)}'>({fmt(key, d, signed=True)})</span>"
                    if d is not None
                    else ""
                )
            cells += f"<td>{cell}</td>"
        rows.append(f"<tr>{cells}</tr>")
    note = "<p class='dim'>cells: fine-tuned / base (Δ)</p>" if has_base else ""
    return f"{note}<table>{head}{''.join(rows)}</table>"


def _answer_cell(name: str, row: dict[str, Any]) -> str:
    facts = [f"score {fmt('score', row.get('score'))}"]
    for key in ("rubric_pass", "behavior_pass", "rouge_l", "judge_score"):
        if row.get(key) is not None:
            facts.append(f"{key} {fmt(key, row[key])}")
    facts.append(f"{row.get('latency', 0):.2f}s, {int(row.get('answer_tokens') or 0)} tok")
    reason = (
        f"<div class='dim'>judge: {html.escape(row['judge_reason'])}</div>" if row.get("judge_reason") else ""
    )
    return (
        f"<td><div class='who'>{html.escape(name)}</div><pre>{html.escape(row['answer'])}</pre>"
        f"<div class='dim'>{' · '.join(facts)}</div>{reason}</td>"
    )


def _item_block(rec: dict[str, Any], models: dict[str, str]) -> str:
    prompt = "\n".join(f"{m['role']}: {m['content']}" for m in rec["messages"] if m["role"] != "system")
    extra = []
    if rec.get("expected_behavior"):
        extra.append(f"expected: {rec['expected_behavior']}")
    if rec.get("score_delta") is not None:
        extra.append(f"Δ score {rec['score_delta']:+.3f}")
    ref = (
        f"<div><b>reference</b><pre>{html.escape(rec['reference'])}</pre></div>"
        if rec.get("reference")
        else ""
    )
    rubric = f"<div class='dim'>rubric: {html.escape(str(rec['rubric']))}</div>" if rec.get("rubric") else ""
    answers = "".join(_answer_cell(label, rec[key]) for key, label in models.items() if key in rec)
    return (
        f"<div class='item'><div class='dim'>{html.escape(rec['id'])} · {html.escape(rec['category'])} · {' · '.join(extra)}</div>"
        f"<pre class='prompt'>{html.escape(prompt)}</pre>{ref}{rubric}<table class='side'><tr>{answers}</tr></table></div>"
    )


def _general_section(general: dict[str, Any] | None, base_name: str | None) -> list[str]:
    if not general:
        return []
    parts = ["<h2>General ability kept</h2>", f"<p>{html.escape(general_line(general))}</p>"]
    if general["lost"]:
        rows = "".join(
            f"<tr><td>{html.escape(x['question'])}</td><td><pre>{html.escape(x['base'])}</pre></td>"
            f"<td><pre>{html.escape(x['finetuned'])}</pre></td></tr>"
            for x in general["lost"]
        )
        parts.append(
            f"<details><summary>{len(general['lost'])} lost: the base ({html.escape(base_name or '')}) "
            "answered right, the fine-tune did not</summary>"
            f"<table class='side'><tr><th>question</th><th>base</th><th>fine-tuned</th></tr>{rows}</table></details>"
        )
    return parts


def extremes(
    records: list[dict[str, Any]], n: int = N_EXTREMES
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The n items with the largest and smallest score delta (or score, without a base)."""
    key = "score_delta" if any(r.get("score_delta") is not None for r in records) else None

    def value(r: dict[str, Any]) -> float:
        v = r.get(key) if key else r["finetuned"].get("score")
        return v if v is not None else 0.0

    ranked = sorted(records, key=value, reverse=True)
    return ranked[:n], ranked[::-1][:n]


CSS = """
.better { color: #08740c; font-weight: 600; } .worse { color: #b3261e; font-weight: 600; }
.item { border-top: 1px solid #ccc; padding: .6em 0; } .prompt { background: #f7f7fb; padding: .4em; }
table.side { width: 100%; table-layout: fixed; } .who { font-weight: 600; }
"""


def write_report(path: Path, metrics: dict[str, Any], records: list[dict[str, Any]]) -> Path:
    models = {"finetuned": f"fine-tuned: {metrics['models']['finetuned']}"}
    if metrics["base"]:
        models["base"] = f"base: {metrics['models']['base']}"
    best, worst = extremes(records)
    if metrics["base"]:
        best_title, worst_title = "Most improved items", "Most regressed items"
        by = "score delta, fine-tuned − base"
    else:
        best_title, worst_title, by = "Best items", "Worst items", "score"
    gen = metrics["generation"]
    parts = [
        f"<h1>Evaluation of {html.escape(metrics['models']['finetuned'])}</h1>",
        f"<p class='dim'>{metrics['created_at']} · {metrics['n_items']} items from {html.escape(', '.join(metrics['suite_files']))}"
        f" · greedy={gen['temperature'] == 0} max_new_tokens={gen['max_new_tokens']}"
        + (f" · judge {html.escape(metrics['judge'])}" if metrics.get("judge") else "")
        + (f" · base {html.escape(metrics['models']['base'])}" if metrics["base"] else "")
        + (
            f" · validation set {html.escape(metrics['validation_set'])}"
            if metrics.get("validation_set")
            else ""
        )
        + "</p>",
        "<h2>Metrics</h2>",
        _metric_table(metrics),
        "<h2>Per category</h2>",
        _category_table(metrics),
        category_chart(metrics),
        *_general_section(metrics.get("general"), metrics["models"].get("base")),
        "<h2>Response time</h2>",
        latency_chart(records),
        f"<h2>{best_title} (by {by})</h2>",
        *(_item_block(r, models) for r in best),
        f"<h2>{worst_title} (by {by})</h2>",
        *(_item_block(r, models) for r in worst),
        f"<h2>All items</h2><details><summary>{len(records)} items</summary>",
        *(_item_block(r, models) for r in records),
        "</details>",
    ]
    path.write_text(page("chattune eval", "".join(parts), css=CSS), encoding="utf-8")
    return path
