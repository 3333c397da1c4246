"""Hyperparameter search over any config key with Optuna: `chattune sweep CONFIG [--worker]`.

    space.py   search space -> trial configs; every key checked against the run config at load
    run.py     `run_sweep`: the study, its workers, one training run per trial
    report.py  trials table and CSV, plots, summary.html, best.yaml

The `sweep:` section's schema (space, sampler, pruner, budget, storage) is `chattune.config.sweep`.
"""
