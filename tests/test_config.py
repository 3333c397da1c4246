from pathlib import Path

import pytest

from chattune.config import load_config
from chattune.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_misspelt_key_names_the_closest_valid_one(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, "train:\n  learning_rat: 1.0e-4\n"))
    assert "train.learning_rat: unknown key; did you mean 'train.learning_rate'?" in str(e.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, "modl: {}\ntrain:\n  batch_size: 0\n  scheduler: cosin\n")
    with pytest.raises(ConfigError) as e:
        load_config(path, ["eval.patience=-3", "nonsense"])
    problems = e.value.problems
    assert len(problems) == 5
    text = "\n".join(problems)
    for fragment in (
        "modl: unknown key; did you mean 'model'",
        "train.batch_size",
        "train.scheduler",
        "eval.patience",
        "'nonsense'",
    ):
        assert fragment in text


def test_dotted_overrides_apply_before_validation(tmp_path):
    cfg = load_config(
        write(tmp_path, "train:\n  learning_rate: 1.0e-3\n"),
        ["train.learning_rate=1e-4", "lora.target_modules=[q_proj, v_proj]"],
    )
    assert cfg.train.learning_rate == 1e-4
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert cfg.output.name == "run"  # defaults to the config file's stem


def test_warmup_steps_and_ratio_are_exclusive():
    with pytest.raises(ConfigError, match="warmup_steps or warmup_ratio"):
        load_config(None, ["train.warmup_steps=10", "train.warmup_ratio=0.1"])


def test_non_mapping_yaml_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(None, ["train.method=lora", "data.max_length=256"])
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again.model_dump(exclude={"output"}) == cfg.model_dump(exclude={"output"})
    assert again.to_yaml() == cfg.to_yaml()  # saving the loaded config again changes nothing


def test_explicit_nulls_survive_the_saved_config(tmp_path):
    cfg = load_config(None, ["train.max_grad_norm=null", "eval.every_steps=null"])
    again = load_config(write(tmp_path, cfg.to_yaml()))
    assert again.train.max_grad_norm is None and again.eval.every_steps is None


def test_train_on_roles_must_keep_the_replies():
    cfg = load_config(None, ["data.train_on_roles=[assistant, user, user]"])
    assert cfg.data.train_on_roles == ["assistant", "user"]
    with pytest.raises(ConfigError, match=r"data.train_on_roles: .*must include assistant"):
        load_config(None, ["data.train_on_roles=[user]"])
    assert load_config(None, ["data.train_on_roles=assistant"]).data.train_on_roles == ["assistant"]
    with pytest.raises(ConfigError, match="OpenAI's fine-tuning trains the assistant's replies only"):
        load_config(None, ["train.backend=openai", "data.train_on_roles=[assistant, user]"])
