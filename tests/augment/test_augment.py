"""Augmentation: user turns only, provenance in meta, reproducible by seed, every operation does what
it says, the CLI reads the run config's augment section, and paraphrase goes through the teacher."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chattune.augment import ops
from chattune.augment.run import augment_conversation, augment_text, run
from chattune.cli import app
from chattune.config import AugmentConfig, TeacherConfig, load_config
from chattune.data.conversation import read_jsonl
from chattune.errors import ConfigError
from tests.helpers import OpenAIStub

SYSTEM = {"role": "system", "content": "You are Kit."}
RECORDS = [
    {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "How do I descale my kettle? I do not want to damage the filter."},
            {"role": "assistant", "content": "Run Descale in the app with 1:1 water and vinegar."},
        ],
        "meta": {"id": "faq-1", "split": "train"},
    },
    {
        "messages": [
            {"role": "user", "content": "Can I change the colour of the light, please?"},
            {"role": "assistant", "content": "The ring colour is fixed."},
            {"role": "user", "content": "What is the warranty on my new kettle?"},
            {"role": "assistant", "content": "3 years with proof of purchase."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "I want to buy a new filter for my kettle."},
            {"role": "assistant", "content": "FL-2, 6 EUR."},
        ]
    },
]


@pytest.fixture
def train_file(tmp_path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS), encoding="utf-8")
    return path


def test_copies_vary_user_turns_only_with_provenance(train_file, tmp_path):
    cfg = AugmentConfig(copies=3, seed=1)
    result = run(cfg, train_file, tmp_path / "out.jsonl")
    out = read_jsonl(result.output_file)
    assert (result.originals, result.copies, result.unchanged) == (3, 9, 0)
    assert len(out) == 12
    originals = read_jsonl(train_file)
    for conv in out:
        if "augmented_from" not in conv.meta:
            continue
        idx = (
            0
            if conv.meta["augmented_from"] == "faq-1"
            else int(conv.meta["augmented_from"].split(":")[1]) - 1
        )
        orig = originals[idx]
        assert [m.role for m in conv.messages] == [m.role for m in orig.messages]
        for m, o in zip(conv.messages, orig.messages, strict=True):
            if m.role == "user":
                continue
            assert m == o  # system and assistant turns untouched
        assert [m.content for m in conv.messages if m.role == "user"] != [
            m.content for m in orig.messages if m.role == "user"
        ]
        assert conv.meta["augment_ops"] and set(conv.meta["augment_ops"]) <= set(ops.OPS)
        assert conv.meta["augment_copy"] in (0, 1, 2)
        # the seed in the provenance makes the same copy again
        again, again_ops = augment_conversation(orig, cfg, random.Random(conv.meta["augment_seed"]))
        assert again.messages == conv.messages and again_ops == conv.meta["augment_ops"]
        assert conv.meta.get("split") == orig.meta.get("split")  # stays on its original's side of the split
    assert sum(result.op_counts.values()) >= 9
    # copies of one conversation differ from each other too
    per_orig: dict[str, set] = {}
    for conv in out:
        key = conv.meta.get("augmented_from")
        if key:
            per_orig.setdefault(key, set()).add(tuple(m.content for m in conv.messages))
    assert all(len(v) == 3 for v in per_orig.values())


def test_same_seed_same_bytes_other_seed_other_bytes(train_file, tmp_path):
    cfg = AugmentConfig(copies=2, seed=7)
    a = run(cfg, train_file, tmp_path / "a.jsonl").output_file.read_bytes()
    b = run(cfg, train_file, tmp_path / "b.jsonl").output_file.read_bytes()
    c = run(cfg.model_copy(update={"seed": 8}), train_file, tmp_path / "c.jsonl").output_file.read_bytes()
    assert a == b and a != c


def test_probabilities_switch_operations(train_file, tmp_path):
    off = {name: 0.0 for name in AugmentConfig().ops.model_dump()}
    only_casing = AugmentConfig(copies=1, ops={**off, "casing": 1.0})
    out = read_jsonl(run(only_casing, train_file, tmp_path / "o.jsonl").output_file)
    copies = [c for c in out if "augmented_from" in c.meta]
    assert copies and all(c.meta["augment_ops"] == ["casing"] for c in copies)
    # with nothing enabled no copy can differ, so none is written, and the count says so
    result = run(AugmentConfig(copies=1, ops=off), train_file, tmp_path / "n.jsonl")
    assert (result.copies, result.unchanged) == (0, 3)


TEXT = "How do I descale my kettle? I do not want to damage the filter, please."


@pytest.mark.parametrize("seed", range(5))
def test_character_noise(seed):
    rng = random.Random(seed)
    typo = ops.keyboard_typo(TEXT, rng, 0.1, 0.01)
    diffs = [(a, b) for a, b in zip(TEXT, typo, strict=True) if a != b]
    assert len(diffs) >= 1 and all(b.lower() in ops.KEYBOARD[a.lower()] for a, b in diffs)
    noisy = ops.letters(TEXT, random.Random(seed), 0.1, 0.01)
    assert noisy != TEXT and abs(len(noisy) - len(TEXT)) <= 1
    assert [w[0] for w in noisy.split()] == [w[0] for w in TEXT.split()]  # first letters kept


def test_word_level_operations():
    rng = random.Random(0)
    assert ops.spelling("A colour of my favorite mug", rng, 1.0, 0.0) == "A color of my favourite mug"
    assert ops.spelling("the kettle", rng, 1.0, 0.0) == "teh kettel"  # common misspellings too
    assert ops.contractions("I do not know, it is broken", rng, 0.1, 0.0) == "I don't know, it's broken"
    assert ops.contractions("I don't know", rng, 0.1, 0.0) == "I do not know"
    swapped = ops.synonyms("Can you help me fix the broken lid?", random.Random(1), 1.0, 0.0)
    assert swapped != "Can you help me fix the broken lid?" and "Can you" in swapped
    table = ops.synonym_table()
    assert "purchase" in table["buy"] and "buy" in table["purchase"]  # groups are symmetric
    # names inside a sentence are left alone ("Kettlebyte Home" keeps its "Home")
    assert ops.synonyms("Open Kettlebyte Home", random.Random(0), 1.0, 0.0) == "Open Kettlebyte Home"
    inserted = ops.random_insert("Please fix my kettle", random.Random(0), 0.25, 0.0)
    assert len(inserted.split()) == 5
    deleted = ops.random_delete("Please fix my kettle now", random.Random(0), 0.2, 0.0)
    assert len(deleted.split()) == 4
    assert ops.random_delete("Fix it", random.Random(0), 0.9, 0.0) == "Fix it"  # too short to lose a word
    words = ["Please", "fix", "my", "kettle", "now"]
    assert sorted(ops.random_swap("Please fix my kettle now", random.Random(0), 0.2, 0.0).split()) == sorted(
        words
    )


def test_structure_casing_and_punctuation():
    forms = {ops.structure("How do I reset the K2?", random.Random(s), 0.1, 0.0) for s in range(20)}
    assert "Can you tell me how to reset the K2?" in forms and "How can I reset the K2?" in forms
    assert ops.structure("Hi. Can I boil milk?", random.Random(0), 0.1, 0.0).startswith("Hi. ")
    assert (
        ops.structure("When it beeps, what should I do?", random.Random(0), 0.1, 0.0)
        == "What should I do when it beeps?"
    )
    cases = {ops.casing("Can I use the App?", random.Random(s), 0.1, 0.0) for s in range(30)}
    assert {"can i use the app?", "CAN I USE THE APP?", "Can I Use The App?"} <= cases
    punct = {
        ops.punctuation("Hello, can I do it? I don't know.", random.Random(s), 0.1, 0.0) for s in range(30)
    }
    assert "Hello can I do it? I don't know." in punct and "Hello, can I do it? I dont know." in punct


def test_augment_section_and_cli(train_file, tmp_path):
    config = tmp_path / "run.yaml"
    out = tmp_path / "aug.jsonl"
    config.write_text(
        yaml.safe_dump(
            {"data": {"train_file": str(train_file)}, "augment": {"copies": 1, "output": str(out)}}
        )
    )
    runner = CliRunner()
    result = runner.invoke(app, ["augment", str(config), "augment.seed=3"])
    assert result.exit_code == 0, result.output
    assert "3 conversations + 3 copies" in result.output and len(read_jsonl(out)) == 6
    # no augment section: defaults, next to the input
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"data": {"train_file": str(train_file)}}))
    assert runner.invoke(app, ["augment", str(bare)]).exit_code == 0
    assert (tmp_path / "train.augmented.jsonl").is_file()
    # nothing to augment, and a misspelt key: one clear error each
    empty = tmp_path / "empty.yaml"
    empty.write_text("augment: {copies: 1}\n")
    bad = runner.invoke(app, ["augment", str(empty)])
    assert bad.exit_code == 2 and "augment.input or data.train_file" in bad.output
    with pytest.raises(ConfigError, match=r"did you mean 'augment.ops.synonyms'"):
        load_config(config, ["augment.ops.synonym=0.5"])
    with pytest.raises(ConfigError, match=r"augment.teacher.kind"):
        load_config(config, ["augment.teacher.kind=remote"])


def test_paraphrase_through_the_teacher(train_file, tmp_path):
    def paraphrase(messages: list[dict[str, str]]) -> str:
        original = messages[-1]["content"].split("Message: ", 1)[1]
        return f"In other words: {original}"

    off = {name: 0.0 for name in AugmentConfig().ops.model_dump()}
    with OpenAIStub(paraphrase) as stub:
        teacher = TeacherConfig(
            kind="openai", model="m", base_url=stub.base_url, cache_dir=tmp_path / "cache"
        )
        cfg = AugmentConfig(copies=1, ops={**off, "paraphrase": 1.0}, teacher=teacher)
        result = run(cfg, train_file, tmp_path / "p.jsonl")
        assert len(stub.requests) == 4  # one per user turn
        run(cfg, train_file, tmp_path / "p2.jsonl")
        assert len(stub.requests) == 4  # cached
    copies = [c for c in read_jsonl(result.output_file) if "augmented_from" in c.meta]
    assert all(c.meta["augment_ops"] == ["paraphrase"] for c in copies)
    assert all(
        m.content.startswith("In other words: ") for c in copies for m in c.messages if m.role == "user"
    )
    # a draft that is far too long is not a paraphrase: the original text stays
    text, applied = augment_text(
        "Hi", cfg.model_copy(update={"ops": cfg.ops.model_copy(update={"paraphrase": 0.0})}), random.Random(0)
    )
    assert (text, applied) == ("Hi", [])
