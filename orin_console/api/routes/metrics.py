"""``GET /metrics``: the app's Prometheus metrics (see :mod:`orin_console.api.metrics`).

:func:`install` is called by :func:`~orin_console.api.app.create_app` once per app: it makes
the app's :class:`~orin_console.api.metrics.ApiMetrics` (its own registry, its event
subscription), adds the request-counting middleware and closes the subscription on shutdown.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response

from orin_console.api.metrics import CONTENT_TYPE, ApiMetrics, RequestMetricsMiddleware

router = APIRouter(tags=["metrics"])


def install(app: FastAPI) -> ApiMetrics:
    """Give ``app`` its metrics (``app.state.metrics``) and count its requests."""
    metrics = ApiMetrics(app.state.core)
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    app.router.add_event_handler("shutdown", metrics.close)
    return metrics


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE: {"example": "orin_queue_depth{model=\"smollm2\"} 0.0\n"}},
                             "description": "The Prometheus text exposition format."}})
def metrics(request: Request) -> Response:
    """Requests by route and status; generations, tokens, TTFT and tokens/s histograms per
    model; loads, admission refusals and runner crashes; queue depth and state per model; memory
    per tier (budget, reserved, predicted, measured); the machine's memory; and the telemetry
    gauges (RAM, swap, GPU, temperatures, power) when the core has a sampler."""
    app_metrics: ApiMetrics | None = getattr(request.app.state, "metrics", None)
    if app_metrics is None:  # an app built without install(): scrape-time figures only
        app_metrics = request.app.state.metrics = ApiMetrics(request.app.state.core, subscribe=False)
    return Response(app_metrics.render(), media_type=CONTENT_TYPE)
