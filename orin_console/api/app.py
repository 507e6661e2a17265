"""The app factory: ``create_app(core)`` serves one core over HTTP.

The app never builds or closes the core: the caller (``orin-console serve``, the TUI with
``--serve``, a test) owns it through :func:`~orin_console.core.create_core`. Routes live in
``orin_console.api.routes`` (one module per group), each an ``APIRouter`` named ``router``;
every route is a thin call on the core's manager or engine.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from orin_console import __version__
from orin_console.api.errors import error_body, install_error_handlers
from orin_console.api.security import DEFAULT_MAX_BODY_BYTES, BodyTooLarge, GuardMiddleware, allowed_hosts_for
from orin_console.core import Core

ROUTE_MODULES: tuple[str, ...] = ("system", "models", "placement", "generate", "events", "openai", "metrics")
"""``orin_console.api.routes.<name>`` modules included, in this order (a missing one is skipped
only while the API is being built; tests check that every one is present)."""

DESCRIPTION = """\
Orin Console's API: the same core as the console. Seed routes (`/system`, `/models`,
`/placement`, `/quick/generate`, generation and events), OpenAI-compatible routes under `/v1`,
and Prometheus metrics at `/metrics`. Off loopback every route but `GET /system/health` needs
`Authorization: Bearer <token>`. Errors are `{"error": {"type", "message", "field"?}}` (OpenAI's
shape under `/v1`).
"""


def create_app(
    core: Core,
    *,
    token: str | None = None,
    bind_host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    cors_origins: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """Build the API over ``core``.

    Args:
        core: the core to serve (its owner starts and closes it).
        token: the bearer token every route but health requires (None: none required).
        bind_host: the address served on (it joins the Host allowlist).
        allowed_hosts: more Host header names to accept (a LAN name; ``"*"``: any).
        cors_origins: origins allowed by CORS (none by default: no CORS headers at all).
        max_body_bytes: the largest request body accepted (413 beyond).
    """
    app = FastAPI(title="Orin Console API", version=__version__, description=DESCRIPTION,
                  docs_url="/docs", redoc_url="/redoc")
    app.state.core = core
    install_error_handlers(app)

    async def _too_large(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body("BodyTooLarge", str(exc)), status_code=413)

    app.add_exception_handler(BodyTooLarge, _too_large)
    for name in ROUTE_MODULES:
        try:
            module = importlib.import_module(f"orin_console.api.routes.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"orin_console.api.routes.{name}":
                raise
            continue
        app.include_router(module.router)
        install = getattr(module, "install", None)  # per-app set-up (metrics: registry, middleware)
        if install is not None:
            install(app)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(GuardMiddleware, token=token,  # outermost: runs before anything else
                       allowed_hosts=allowed_hosts_for(bind_host, allowed_hosts),
                       max_body_bytes=max_body_bytes)
    return app
