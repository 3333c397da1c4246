"""Hosted fine-tuning through OpenAI's API: `train.backend: openai` (see job.py), and chat/eval of the result.

    chattune train examples/openai.yaml            # validate, estimate, confirm, upload, create, follow
    chattune train examples/openai.yaml --resume   # reattach to the job after Ctrl-C
    chattune chat runs/openai -p "hi"              # the fine-tuned model, through the API

config.py holds the `openai:` section, client.py the SDK client and its errors, upload.py the data checks
and idempotent uploads, job.py the train stage, provider.py what chat and eval talk to.
"""
