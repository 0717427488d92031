"""The routes the gateway mounts for operators: the admin API and the dashboard."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ciyuan.admin.api import admin_api
from ciyuan.admin.auth import AdminConfig
from ciyuan.admin.dashboard import dashboard_app
from ciyuan.gateway.runtime import Runtime


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


def admin_routes(runtime: Runtime, config: AdminConfig) -> list[BaseRoute]:
    """``/admin/…`` (JSON, bearer admin key) and ``/dashboard/…`` (HTML, session cookie)."""
    return [
        Mount("/admin", admin_api(runtime, config)),
        Route("/dashboard", _to_dashboard, methods=["GET"]),
        Mount("/dashboard", dashboard_app(runtime, config)),
    ]
