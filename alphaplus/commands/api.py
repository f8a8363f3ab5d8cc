"""`alphaplus api`: the REST/WebSocket API and the dashboard, served by uvicorn."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from core import logs
from core.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "api", help="serve the REST API, the /ws WebSocket and the dashboard (uvicorn)")
    parser.add_argument("--host", help="bind address (default ALPHAPLUS_API_HOST)")
    parser.add_argument("--port", type=int, help="port (default ALPHAPLUS_API_PORT)")
    parser.add_argument("--workers", type=int,
                        help="uvicorn worker processes (default ALPHAPLUS_API_WORKERS)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.ws.serving import uvicorn_ws_options

    settings = Settings.from_env()
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    workers = args.workers or settings.api_workers
    print(f"api: http://{host}:{port}/ (dashboard), /docs (OpenAPI), /ws; {workers} worker(s)",
          flush=True)
    # A factory by import string: every worker process builds its own app (and its own
    # pub/sub listener and WebSocket hub) from the same environment.
    # The log configuration travels to every uvicorn worker process (core/logs.py).
    log_config = logs.uvicorn_config("api", settings.log_format,
                                     logging.getLogger().getEffectiveLevel())
    uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, lifespan="on", log_config=log_config,
                **uvicorn_ws_options(settings))
    return 0
