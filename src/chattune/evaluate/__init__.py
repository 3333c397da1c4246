"""Evaluation: prove what a fine-tune changed, per category, against its base model, including response time.

    chattune eval runs/quickstart --suite examples/data/kettlebyte_eval.jsonl

Modules, in pipeline order: suite (load eval suites), behavior (clarify/decline/correct heuristics),
metrics (per-answer scores and aggregation), judge (optional LLM-as-judge), general (general ability kept
against the base), report (HTML and terminal), run (the `evaluate` entry), during_training (suite metrics
inside the training loop).
"""
