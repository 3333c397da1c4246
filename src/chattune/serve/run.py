"""Load what the user points at and serve it with uvicorn, refusing to expose a keyless server."""

from __future__ import annotations

import ipaddress

from chattune.config.serve import ServeConfig
from chattune.errors import ChattuneError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere, so treat it as exposed
        return False


def serve(name_or_path: str, config: ServeConfig) -> None:
    if not is_loopback(config.host) and config.api_key is None:
        raise ChattuneError(
            f"refusing to listen on {config.host} without an API key: pass --api-key or set "
            "CHATTUNE_API_KEY (or bind 127.0.0.1)"
        )
    import uvicorn

    from chattune.chat import default_system_prompt
    from chattune.model import load_for_inference
    from chattune.serve.app import create_app

    model, tokenizer, _ = load_for_inference(name_or_path)
    name = name_or_path.rstrip("/").split("/")[-1]
    app = create_app(
        model, tokenizer, model_name=name, system_prompt=default_system_prompt(name_or_path), config=config
    )
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
