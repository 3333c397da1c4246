"""chattune: from raw conversations to a fine-tuned chat model you can measure and serve.

The package is laid out as the workflow: `data` (ingest, validate, clean, tokenize), `scenarios` and
`augment`, `train`, `sweep`, `evaluate`, `chat` and `serve`. `chattune --help` lists the commands.
"""

__version__ = "0.1.0"
