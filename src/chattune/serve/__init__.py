"""`chattune serve RUN_OR_MODEL`: an OpenAI-compatible server that batches concurrent requests.

    chattune serve runs/quickstart --port 8000                       # loopback, no key needed
    CHATTUNE_API_KEY=s3cret chattune serve runs/quickstart --host 0.0.0.0
    curl http://127.0.0.1:8000/v1/chat/completions -H 'content-type: application/json' \\
         -d '{"model": "quickstart", "messages": [{"role": "user", "content": "How do I descale?"}]}'

Any OpenAI client works (`OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...)`), streamed or not.
Modules: `config` (settings), `protocol` (request bodies, error shape), `engine` (continuous batching),
`metrics` (Prometheus), `app` (routes and guards), `run` (load a model and start uvicorn).
"""

from chattune.config.serve import ServeConfig
from chattune.serve.app import create_app
from chattune.serve.run import serve

__all__ = ["ServeConfig", "create_app", "serve"]
