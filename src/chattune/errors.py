"""The errors chattune reports to users: one line each, naming what is wrong and where."""


class ChattuneError(Exception):
    """Base class: the CLI prints these as a single red line and exits with status 2."""


class ConfigError(ChattuneError):
    """A config that failed validation. Holds every problem found, not just the first."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the config\n{lines}")


class DataError(ChattuneError):
    """Bad input data, located as precisely as we can: file, line (1-based) and field."""

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, field: str | None = None
    ):
        self.file, self.line, self.field = file, line, field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        at = f" (field {field})" if field else ""
        super().__init__(f"{where}: {message}{at}" if where else f"{message}{at}")
