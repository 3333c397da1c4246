"""`python -m chattune ...` is the same as the `chattune` command."""

from chattune.cli import app

app()
