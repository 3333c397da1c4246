"""Scenarios: build training conversations that cover what real users do, from a short spec.

    chattune scenarios build examples/scenarios.yaml

`spec` defines the YAML, `engine` the offline template engine, `generators` the teacher-backed ones,
`coverage` the report, and `build` the stage's entry function.
"""

from chattune.scenarios.build import BuildResult, build
from chattune.scenarios.spec import CATEGORIES, ScenarioSpec, load_spec

__all__ = ["CATEGORIES", "BuildResult", "ScenarioSpec", "build", "load_spec"]
