"""How uvicorn serves the app: the connection protocol with read deadlines, and the server's limits.

Owns: `uvicorn_config(app, settings)` (the h11 protocol with `api.read_timeout_s`, keep-alive and
shutdown timeouts) and `close_app(app)` (stops the body-parsing processes). The process's signal
handling, start and shutdown order belong to `forge.lifecycle`; this module must never start or
stop the forge.
"""

from __future__ import annotations

import logging

import uvicorn
from fastapi import FastAPI

from tezzeret.api.app import cut_off_reporter, malformed_reporter
from tezzeret.api.protocol import deadline_protocol
from tezzeret.config import Settings

log = logging.getLogger(__name__)


def uvicorn_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    api = settings.api
    protocol = deadline_protocol(api.read_timeout_s, cut_off_reporter(app.state.audit), malformed_reporter)
    if api.submit_needs_token():
        if not any("submit" in t.roles for t in api.tokens):
            log.warning("submissions need a bearer token with role 'submit' (api.require_token_for_submit=%s, "
                        "api.host=%s) and no api.tokens entry has that role: every submission will be refused",
                        api.require_token_for_submit, api.host)
        else:
            log.info("submissions need a bearer token with role 'submit'")
    else:
        log.info("anonymous submissions allowed (api.host=%s is loopback, api.require_token_for_submit=%s); "
                 "rate limit %s/min per client", api.host, api.require_token_for_submit, api.rate_limit_per_min or "no")
    return uvicorn.Config(
        app,
        host=api.host,
        port=api.port,
        http=protocol,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=5,
    )


def close_app(app: FastAPI) -> None:
    parser = getattr(app.state, "parser", None)
    if parser is not None:
        parser.close()
