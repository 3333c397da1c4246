"""What a sweep leaves behind, rebuilt from the study whenever the main process finishes:

<sweep dir>/trials.csv      one row per trial: number, status, metric, parameters, duration, steps, peak RSS, run dir
<sweep dir>/plots/*.png     optimisation history, learning curves, parameter importance,
                            parallel coordinates, learning rate vs the metric
<sweep dir>/summary.html    the table and the plots in one self-contained page
<sweep dir>/best.yaml       the base config with the best parameters: `chattune train best.yaml`
"""

from __future__ import annotations

import csv
import html
import math
import warnings
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.table import Table

from chattune.config import RunConfig
from chattune.report import figure, page
from chattune.sweep.space import best_config

STATUS = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "failed",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}
LEARNING_RATE = "train.learning_rate"


def write_reports(study: optuna.Study, cfg: RunConfig, root: Path, *, console: Console) -> Path | None:
    """Print the trials table and write trials.csv, plots/, summary.html and best.yaml (returned; None
    without a complete trial)."""
    sweep = cfg.sweep
    assert sweep is not None
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(trials, sweep.metric)
    best = _best_trial(study)
    console.print(trials_table(rows, sweep.metric, list(sweep.space), best.number if best else None))
    write_csv(rows, root / "trials.csv")
    plots, notes = write_plots(study, root / "plots", sweep.metric)
    best_yaml = write_best(study, cfg, root)
    write_summary(
        root / "summary.html", study, rows, sweep.metric, list(sweep.space), plots, notes, best_yaml
    )
    for note in notes:
        console.print(f"[dim]{note}[/]")
    if best is not None:
        console.print(
            f"best: trial {best.number} ({sweep.metric} {best.value:.4f}); train it with `chattune train {best_yaml}`"
        )
    console.print(f"summary: {root / 'summary.html'}")
    return best_yaml


# ---------------------------------------------------------------------------------------------------
# the table


def trial_rows(trials: list[FrozenTrial], metric: str) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        value = t.value if t.state == TrialState.COMPLETE else _last_intermediate(t)
        note = t.user_attrs.get("error", "")
        if t.state == TrialState.PRUNED and t.last_step is not None:
            note = f"pruned at step {t.last_step}"
        elif t.state == TrialState.FAIL and not note:
            note = "worker died or was interrupted"
        if "resumed_from" in t.user_attrs:
            note = f"retry of trial {t.user_attrs['resumed_from']}, resumed" + (f"; {note}" if note else "")
        elif t.system_attrs.get("retry_history"):
            note = f"retry of trial {t.system_attrs['retry_history'][-1]}" + (f"; {note}" if note else "")
        rows.append(
            {
                "number": t.number,
                "status": STATUS[t.state],
                metric: value,
                **{f"params.{k}": v for k, v in t.params.items()},
                "duration_s": round(t.duration.total_seconds(), 1) if t.duration else None,
                "steps": t.user_attrs.get("steps"),
                "peak_rss_gb": t.user_attrs.get("peak_rss_gb"),
                "run_dir": t.user_attrs.get("run_dir", ""),
                "note": note,
            }
        )
    return rows


def trials_table(rows: list[dict[str, Any]], metric: str, params: list[str], best: int | None) -> Table:
    table = Table(title="trials", title_justify="left")
    for name in ["#", "status", metric, *params, "time", "steps", "note"]:
        table.add_column(name, justify="right" if name not in ("status", "note") else "left", overflow="fold")
    colour = {"complete": "green", "pruned": "yellow", "failed": "red"}
    for r in rows:
        value = r[metric]
        table.add_row(
            str(r["number"]) + (" *" if r["number"] == best else ""),
            f"[{colour.get(r['status'], 'white')}]{r['status']}[/]",
            "" if value is None else f"{value:.4f}",
            *(_fmt(r.get(f"params.{p}")) for p in params),
            "" if r["duration_s"] is None else f"{r['duration_s']:.0f} s",
            "" if r["steps"] is None else str(r["steps"]),
            r["note"],
            style="bold" if r["number"] == best else None,
        )
    return table


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------------
# plots


def write_plots(study: optuna.Study, out: Path, metric: str) -> tuple[dict[str, Path], list[str]]:
    """PNG plots with optuna.visualization.matplotlib; a plot the study cannot support yet is skipped
    with a note instead (e.g. importance needs two complete trials and two parameters)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    out.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    params = sorted({k for t in complete for k in t.params})
    plots: dict[str, Path] = {}
    notes: list[str] = []

    wanted: list[tuple[str, str, Callable[[], Any] | None, str]] = [
        (
            "optimization_history",
            "optimisation history",
            lambda: vis.plot_optimization_history(study, target_name=metric),
            "no complete trial yet",
        ),
        (
            "intermediate_values",
            "learning curves (pruned trials stop early)",
            lambda: vis.plot_intermediate_values(study),
            "no reported evaluations",
        ),
        (
            "param_importances",
            "parameter importance",
            (lambda: vis.plot_param_importances(study, evaluator=_importance_evaluator(), target_name=metric))
            if len(complete) >= 2 and len(params) >= 2
            else None,
            "parameter importance needs 2 complete trials and 2 parameters",
        ),
        (
            "parallel_coordinate",
            "parallel coordinates",
            lambda: vis.plot_parallel_coordinate(study, target_name=metric),
            "no complete trial yet",
        ),
        (
            "learning_rate",
            f"learning rate vs {metric}",
            (lambda: _plot_learning_rate(study, metric)) if LEARNING_RATE in params else None,
            f"{LEARNING_RATE} is not searched: no learning-rate plot",
        ),
    ]
    for name, title, make, why_not in wanted:
        if make is None or (not complete and name != "intermediate_values"):
            notes.append(f"{title}: skipped ({why_not})")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks these plots experimental; they work
                ax = make()
            figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
            figure.set_size_inches(8, 4.5)
            figure.tight_layout()
            figure.savefig(out / f"{name}.png", dpi=110)
            plt.close(figure)
            plots[title] = out / f"{name}.png"
        except Exception as e:  # a plot is a convenience: never lose the sweep's results over one
            notes.append(f"{title}: skipped ({type(e).__name__}: {' '.join(str(e).split())[:200]})")
            plt.close("all")
    return plots, notes


def _plot_learning_rate(study: optuna.Study, metric: str) -> Any:
    """Learning rate (log axis) against the metric. By hand rather than Optuna's slice plot, which shows
    complete trials only: here pruned trials appear too, at their last reported value."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    for state, color, marker in (
        (TrialState.COMPLETE, "tab:blue", "o"),
        (TrialState.PRUNED, "tab:orange", "x"),
    ):
        points = [
            (t.params[LEARNING_RATE], v)
            for t in study.get_trials(deepcopy=False, states=(state,))
            if LEARNING_RATE in t.params
            and (v := t.value if state == TrialState.COMPLETE else _last_intermediate(t)) is not None
        ]
        if points:
            ax.scatter(
                *zip(*points, strict=True),
                label=f"{STATUS[state]} ({len(points)})",
                color=color,
                marker=marker,
            )
    ax.set_xscale("log")
    ax.set_xlabel(LEARNING_RATE)
    ax.set_ylabel(f"{metric} (pruned: last reported)")
    ax.set_title(f"Learning rate vs {metric}")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def _importance_evaluator() -> Any:
    # PED-ANOVA needs only numpy (fANOVA would want a random forest); Optuna >= 4 makes it the default.
    from optuna.importance import PedAnovaImportanceEvaluator

    return PedAnovaImportanceEvaluator()


# ---------------------------------------------------------------------------------------------------
# best.yaml and summary.html


def write_best(study: optuna.Study, cfg: RunConfig, root: Path) -> Path | None:
    best = _best_trial(study)
    if best is None:
        return None
    sweep = cfg.sweep
    assert sweep is not None
    name = f"{cfg.output.name or 'run'}-best"
    config = best_config(cfg, best.params, name=name)
    cap = ""
    if sweep.max_steps_per_trial:
        cap = (
            f"# Trials ran at most {sweep.max_steps_per_trial} steps (sweep.max_steps_per_trial); this config trains as long as the\n"
            f"# base config says. Add train.max_steps={best.user_attrs.get('steps', sweep.max_steps_per_trial)} to repeat the trial exactly.\n"
        )
    header = (
        f"# Best trial of sweep {study.study_name!r}: trial {best.number}, {sweep.metric} {best.value:.4f}\n"
        + "".join(f"#   {k}: {_fmt(v)}\n" for k, v in best.params.items())
        + cap
        + f"#\n#   chattune train {root / 'best.yaml'}\n"
    )
    path = root / "best.yaml"
    path.write_text(header + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def write_summary(
    path: Path,
    study: optuna.Study,
    rows: list[dict[str, Any]],
    metric: str,
    params: list[str],
    plots: dict[str, Path],
    notes: list[str],
    best_yaml: Path | None,
) -> Path:
    best = _best_trial(study)
    esc = html.escape
    head = ["#", "status", metric, *params, "time (s)", "steps", "note"]
    body_rows = "".join(
        "<tr{}>".format(' class="best"' if best and r["number"] == best.number else "")
        + "".join(
            f"<td>{esc(_fmt(v))}</td>"
            for v in [
                r["number"],
                r["status"],
                r[metric],
                *(r.get(f"params.{p}") for p in params),
                r["duration_s"],
                r["steps"],
                r["note"],
            ]
        )
        + "</tr>\n"
        for r in rows
    )
    figures = "".join(f"<h2>{esc(title)}</h2>\n{figure(p, title)}\n" for title, p in plots.items())
    best_html = (
        f"<p>Best: trial {best.number}, {esc(metric)} <b>{best.value:.4f}</b> ("
        + ", ".join(f"{esc(k)}={esc(_fmt(v))}" for k, v in best.params.items())
        + f"). Config: <code>{esc(str(best_yaml))}</code>, weights: <code>{esc(str(best.user_attrs.get('run_dir', '')))}/final</code>.</p>"
        if best
        else "<p>No trial completed.</p>"
    )
    css = "td,th{text-align:right} tr.best{font-weight:bold;background:#eef8ee} table{font-size:0.9em}"
    body = f"""<h1>Sweep {esc(study.study_name)}</h1>
<p>{esc(datetime.now().strftime("%Y-%m-%d %H:%M"))}; {len(rows)} trials; metric {esc(metric)} ({esc(study.direction.name.lower())}).</p>
{best_html}
<table><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr>
{body_rows}</table>
{figures}
{"".join(f"<p><i>{esc(n)}</i></p>" for n in notes)}"""
    path.write_text(page(f"sweep {study.study_name}", body, css=css), encoding="utf-8")
    return path


def _best_trial(study: optuna.Study) -> FrozenTrial | None:
    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def _last_intermediate(t: FrozenTrial) -> float | None:
    return t.intermediate_values[t.last_step] if t.last_step is not None else None


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
