"""The scenario teacher generator with the real embedded model (SmolLM2-135M-Instruct), offline. Marked slow."""

import json

import pytest

from chattune.scenarios import load_spec
from chattune.scenarios.generators import teacher_scenes
from chattune.teacher import Teacher
from tests.helpers import ROOT

pytestmark = pytest.mark.slow
EXAMPLE = ROOT / "examples" / "scenarios.yaml"


def test_teacher_generator_with_the_embedded_model_offline(tmp_path):
    spec = load_spec(
        EXAMPLE,
        [
            "model_generator.per_intent=1",
            "model_generator.max_attempts=1",
            "teacher.max_new_tokens=16",
            "teacher.temperature=0",
            f"teacher.cache_dir={tmp_path}",
        ],
    )
    spec = spec.model_copy(update={"intents": [spec.intent("descaling")]})  # one intent: few tokens
    teacher = Teacher(spec.teacher)
    scenes, rejected = teacher_scenes(spec, teacher)
    assert len(scenes) + rejected == 1
    assert 1 <= teacher.requests <= 2  # one user draft, one reply
    if scenes:
        scene = scenes[0]
        assert scene.meta["generator"] == "teacher" and scene.turns[0][0].strip()
        assert scene.meta["fact_check"] in ("passed", "replaced_by_reference")
    json.dumps([s.meta for s in scenes])  # meta stays JSON-serialisable
    # a rerun with a fresh teacher (no model loaded) is answered from the cache
    rerun = Teacher(spec.teacher)
    assert [s.turns for s in teacher_scenes(spec, rerun)[0]] == [s.turns for s in scenes]
    assert rerun.requests == 0 and rerun._local is None
