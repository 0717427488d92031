"""The operator dashboard at ``/dashboard``: server-rendered pages over the admin key.

Security, in the order a request meets it:

* Every response carries a strict Content-Security-Policy (scripts and styles only from
  ``/dashboard/static``, no inline script, no framing), ``nosniff`` and ``no-referrer``.
* Pages need a session cookie from the login form: HttpOnly, SameSite=Strict, path
  ``/dashboard``, signed and expiring (``admin.auth``). The JSON API never accepts it.
* Every form POST carries a CSRF token bound to the session (the login form: to a nonce
  cookie); without it the POST is refused with 403 and changes nothing.
* Templates autoescape everything; the charts escape their labels (``admin.charts``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ciyuan.admin.api import create_api_key
from ciyuan.admin.auth import LOGIN_COOKIE, SESSION_COOKIE, AdminAuth, AdminConfig
from ciyuan.admin.overview import (
    RANGES,
    budget_used,
    gather_overview,
    key_label,
    money,
    tokens,
)
from ciyuan.admin.views import iso, price_json
from ciyuan.errors import CiyuanError, InvalidRequest
from ciyuan.gateway.request_parsing import read_body
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.wire_errors import status_of
from ciyuan.ledger.accounts import AccountKind
from ciyuan.pricing.money import Amount

log = logging.getLogger("ciyuan.admin")
HERE: Final = Path(__file__).parent
FORM_BYTES_MAX: Final = 16 * 1024
LOGIN_NONCE_TTL_S: Final = 900
REQUESTS_PAGE_ROWS: Final = 100
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_SECURITY_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    auto_reload=False,
)
_templates.globals["used_pct"] = lambda status: int(budget_used(status) * 100)
_templates.filters.update(
    money=money, tokens=tokens, iso=iso, nanos=lambda nanos: money(Amount(nanos))
)


class SecurityHeaders:
    """Adds the security headers to every dashboard response, redirects and errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS:
                    headers.append(name.decode(), value.decode())
                if "cache-control" not in headers:
                    # Pages show balances and keys: never keep them in a shared or disk cache.
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _render(template: str, status: int = 200, **context: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status)


def _auth(request: Request) -> AdminAuth:
    auth: AdminAuth = request.app.state.auth
    return auth


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def _form(request: Request) -> dict[str, str]:
    """A small url-encoded form (the one kind the dashboard's pages send)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        # An empty form: it has no CSRF token, so the POST is refused with 403 like any other.
        return {}
    raw = await read_body(request, FORM_BYTES_MAX, _runtime(request).limits.body_timeout_s)
    try:
        parsed = parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the form is not valid url-encoded UTF-8") from None
    return {name: values[0] for name, values in parsed.items()}


def _session(request: Request) -> str | None:
    return _auth(request).session_id(request.cookies.get(SESSION_COOKIE))


def _to_login(request: Request) -> Response:
    expired = SESSION_COOKIE in request.cookies
    target = "/dashboard/login" + ("?expired=1" if expired else "")
    response = RedirectResponse(target, status_code=303)
    if expired:
        response.delete_cookie(SESSION_COOKIE, path="/dashboard")
    return response


def _forbidden() -> Response:
    return _render(
        "error.html",
        403,
        title="Form refused",
        message="This form expired or did not come from this dashboard. "
        "Reload the page and try again.",
    )


def _page(request: Request, session_id: str, template: str, **context: Any) -> HTMLResponse:
    return _render(
        template,
        csrf=_auth(request).csrf_token(session_id),
        path=request.url.path,
        **context,
    )


# ---- login and logout ---------------------------------------------------------------------


async def login_form(
    request: Request, *, message: str | None = None, status: int = 200
) -> Response:
    auth = _auth(request)
    if message is None and request.query_params.get("expired"):
        message = "Your session has expired. Sign in again."
    nonce = auth.new_login_nonce()
    response = _render("login.html", status, csrf=auth.login_token(nonce), message=message, path="")
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=LOGIN_NONCE_TTL_S,
        path="/dashboard/login",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


async def login_get(request: Request) -> Response:
    if _session(request) is not None:
        return RedirectResponse("/dashboard/", status_code=303)
    return await login_form(request)


async def login_post(request: Request) -> Response:
    auth = _auth(request)
    form = await _form(request)
    if not auth.login_ok(request.cookies.get(LOGIN_COOKIE), form.get("csrf")):
        return _forbidden()
    if not auth.is_admin_key(form.get("admin_key", "").strip()):
        log.warning("dashboard login refused: wrong admin key")
        return await login_form(request, message="That is not the admin key.", status=401)
    response = RedirectResponse("/dashboard/", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        auth.new_session(),
        max_age=int(auth.session_ttl_s),
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/dashboard/login")
    return response


async def logout(request: Request) -> Response:
    session_id = _session(request)
    form = await _form(request)
    if session_id is None or not _auth(request).csrf_ok(session_id, form.get("csrf")):
        return _forbidden()
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/dashboard")
    return response


# ---- pages --------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    range_name = request.query_params.get("range", "7d")
    if range_name not in RANGES:
        range_name = "7d"
    runtime = _runtime(request)
    data = await runtime.in_store(
        gather_overview, runtime.metering.store, runtime.metering.clock, range_name
    )
    return _page(request, session_id, "overview.html", o=data, ranges=list(RANGES))


async def requests_page(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    events = await runtime.in_store(store.recent_usage, limit=REQUESTS_PAGE_ROWS)
    accounts = await runtime.in_store(store.list_accounts)
    keys = await runtime.in_store(store.list_api_keys)
    return _page(
        request,
        session_id,
        "requests.html",
        events=events,
        account_names={a.id: a.name for a in accounts},
        key_names={k.id: key_label(k) for k in keys},
    )


async def receipt_page(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    request_id = request.path_params["request_id"]
    if not 1 <= len(request_id) <= 64:
        raise InvalidRequest("request id must be 1 to 64 characters", param="request_id")
    runtime = _runtime(request)
    found = await runtime.in_store(runtime.metering.store.receipt, request_id)
    return _page(request, session_id, "receipt.html", request_id=request_id, receipt=found)


async def accounts_page(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    accounts = await runtime.in_store(store.list_accounts)
    budgets = await runtime.in_store(store.list_budgets)
    return _page(
        request,
        session_id,
        "accounts.html",
        budgets=sorted(budgets, key=budget_used, reverse=True),
        customers=[a for a in accounts if a.kind is AccountKind.CUSTOMER],
        system=[a for a in accounts if a.kind is not AccountKind.CUSTOMER],
    )


async def keys_page(request: Request, *, created: dict[str, Any] | None = None) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    runtime = _runtime(request)
    store = runtime.metering.store
    keys = await runtime.in_store(store.list_api_keys)
    accounts = await runtime.in_store(store.list_accounts)
    return _page(
        request,
        session_id,
        "keys.html",
        keys=sorted(keys, key=lambda k: (k.revoked_us is not None, -k.created_us)),
        customers=[a for a in accounts if a.kind is AccountKind.CUSTOMER],
        created=created,
        revoked=request.query_params.get("revoked"),
    )


async def keys_create(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    form = await _form(request)
    if not _auth(request).csrf_ok(session_id, form.get("csrf")):
        return _forbidden()
    label = form.get("label", "").strip()[:200] or None
    runtime = _runtime(request)
    account = await runtime.in_store(runtime.metering.store.get_account, form.get("account", ""))
    created = await create_api_key(runtime, account.id, label)
    # Rendered directly, never redirected to: the secret must not sit in a URL or be reloadable.
    return await keys_page(request, created=created)


async def keys_revoke(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    form = await _form(request)
    if not _auth(request).csrf_ok(session_id, form.get("csrf")):
        return _forbidden()
    runtime = _runtime(request)
    record = await runtime.in_store(
        runtime.metering.store.revoke_api_key, request.path_params["key"]
    )
    await runtime.announce_revocation(record.prefix)
    return RedirectResponse(f"/dashboard/keys?revoked={record.prefix}", status_code=303)


async def prices_page(request: Request) -> Response:
    session_id = _session(request)
    if session_id is None:
        return _to_login(request)
    catalog = _runtime(request).router.catalog
    operator = set(catalog.operator_prices)
    rows = [price_json(p, p in operator) for p in catalog.current()]
    return _page(request, session_id, "prices.html", prices=rows)


# ---- errors and assembly ------------------------------------------------------------------


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CiyuanError)
    return _render("error.html", status_of(exc), title="Request refused", message=exc.message)


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return _render("error.html", exc.status_code, title="Not found", message=str(exc.detail))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _render("error.html", 500, title="Internal error", message="Something went wrong.")


def dashboard_app(runtime: Runtime, config: AdminConfig) -> ASGIApp:
    """The app mounted at ``/dashboard``; a page saying why when no admin key is set."""
    if config.key is None:
        reason = config.disabled_reason
        assert reason is not None

        async def disabled(request: Request) -> Response:
            return _render("error.html", 404, title="Dashboard disabled", message=reason)

        return SecurityHeaders(Starlette(routes=[Route("/{path:path}", disabled)]))
    app = Starlette(
        routes=[
            Route("/", overview, methods=["GET"]),
            Route("/login", login_get, methods=["GET"]),
            Route("/login", login_post, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Route("/requests", requests_page, methods=["GET"]),
            Route("/requests/{request_id}", receipt_page, methods=["GET"]),
            Route("/accounts", accounts_page, methods=["GET"]),
            Route("/keys", keys_page, methods=["GET"]),
            Route("/keys", keys_create, methods=["POST"]),
            Route("/keys/{key}/revoke", keys_revoke, methods=["POST"]),
            Route("/prices", prices_page, methods=["GET"]),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ],
        exception_handlers={
            CiyuanError: _on_error,
            HTTPException: _on_http,
            Exception: _on_unexpected,
        },
    )
    app.state.runtime = runtime
    app.state.auth = AdminAuth(
        config.key, session_ttl_s=config.session_ttl_s, clock=runtime.metering.clock
    )
    return SecurityHeaders(app)
