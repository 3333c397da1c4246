"""Which weights `chat`, `eval`, `serve` and `export` load from a run directory."""

import json

from chattune.model import find_model_dir


def _adapter(folder, step=None):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"")
    if step is not None:
        (folder / "state.json").write_text(json.dumps({"step": step}))


def test_an_unmerged_lora_run_loads_its_best_adapter_not_the_newest_checkpoint(tmp_path):
    # best at step 4 went to final/adapter; step 12 is newer (and worse) and still on disk
    run = tmp_path / "run"
    _adapter(run / "checkpoints" / "step-000004", step=4)
    _adapter(run / "checkpoints" / "step-000012", step=12)
    _adapter(run / "final" / "adapter")
    (run / "final" / "chattune.yaml").write_text("train:\n  method: qlora\n")
    (run / "config.yaml").write_text("train:\n  method: lora\n")

    model_dir, cfg = find_model_dir(run)

    assert model_dir == run / "final" / "adapter"
    assert cfg is not None and cfg.train.method == "qlora"  # final/'s config, not the run's top-level one


def test_a_merged_final_still_wins_and_a_run_without_final_uses_its_newest_checkpoint(tmp_path):
    run = tmp_path / "run"
    _adapter(run / "checkpoints" / "step-000012", step=12)
    assert find_model_dir(run)[0] == run / "checkpoints" / "step-000012"
    _adapter(run / "final" / "adapter")
    (run / "final" / "config.json").write_text("{}")
    assert find_model_dir(run)[0] == run / "final"
