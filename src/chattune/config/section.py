"""The base class of every config section, in a module of its own so that stage configs (data.prepare,
augment, sweep, ...) can derive from it while chattune.config imports them to build RunConfig."""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Unknown keys are errors; assignments are re-validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
