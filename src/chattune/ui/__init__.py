"""`chattune ui`: a local web dashboard over the same functions the CLI calls (see app.py)."""
