"""The dashboard over real HTTP, without a browser: login, CSRF, escaping, headers, expiry.

A browser would hide what matters here (cookies' flags, a refused POST's status, the raw
HTML), so these tests use httpx against a real gateway; ``test_dashboard_browser`` drives
Chromium through the same pages.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import httpx
import pytest

from ciyuan.admin.auth import AdminAuth
from ciyuan.apikeys import Secret
from ciyuan.clock import FixedClock, SystemClock
from ciyuan.pricing.money import Amount
from tests.admin.conftest import ADMIN_KEY, AdminGateway

XSS = "<script>alert(1)</script>"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def login(gateway: AdminGateway) -> httpx.Client:
    client = httpx.Client(base_url=gateway.base_url, timeout=30)
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    done = client.post("/dashboard/login", data={"admin_key": ADMIN_KEY, "csrf": _csrf(form.text)})
    assert done.status_code == 303 and done.headers["location"] == "/dashboard/"
    return client


@pytest.fixture
def browser(gateway: AdminGateway) -> Iterator[httpx.Client]:
    client = login(gateway)
    yield client
    client.close()


def test_pages_need_a_login(gateway: AdminGateway) -> None:
    for path in ("/dashboard/", "/dashboard/keys", "/dashboard/requests", "/dashboard/prices"):
        response = httpx.get(gateway.base_url + path)
        assert response.status_code == 303 and response.headers["location"] == "/dashboard/login"
    assert httpx.get(gateway.base_url + "/dashboard").status_code == 307


def test_login_sets_a_strict_http_only_expiring_cookie(gateway: AdminGateway) -> None:
    client = httpx.Client(base_url=gateway.base_url)
    form = client.get("/dashboard/login")
    done = client.post("/dashboard/login", data={"admin_key": ADMIN_KEY, "csrf": _csrf(form.text)})
    cookie = done.headers.get_list("set-cookie")
    session = next(c for c in cookie if c.startswith("ciyuan_session="))
    assert "HttpOnly" in session and "SameSite=strict" in session and "Max-Age=" in session
    assert "Path=/dashboard" in session
    assert ADMIN_KEY not in session
    client.close()


def test_wrong_admin_key_and_client_key_are_refused(gateway: AdminGateway) -> None:
    _, client_key = gateway.customer("1.00")
    for wrong in ("nope", client_key, ADMIN_KEY + "x"):
        client = httpx.Client(base_url=gateway.base_url)
        form = client.get("/dashboard/login")
        done = client.post("/dashboard/login", data={"admin_key": wrong, "csrf": _csrf(form.text)})
        assert done.status_code == 401 and "ciyuan_session" not in done.headers.get(
            "set-cookie", ""
        )
        assert client.get("/dashboard/").status_code == 303
        client.close()


def test_login_without_its_csrf_token_is_refused(gateway: AdminGateway) -> None:
    client = httpx.Client(base_url=gateway.base_url)
    client.get("/dashboard/login")
    assert client.post("/dashboard/login", data={"admin_key": ADMIN_KEY}).status_code == 403
    fresh = httpx.post(
        gateway.base_url + "/dashboard/login", data={"admin_key": ADMIN_KEY, "csrf": "forged"}
    )
    assert fresh.status_code == 403
    client.close()


def test_posts_without_the_csrf_token_are_refused_and_change_nothing(
    gateway: AdminGateway, browser: httpx.Client
) -> None:
    account_id, client_key = gateway.customer("1.00")
    prefix = client_key.split("_")[0]
    keys_before = len(gateway.store.list_api_keys(account_id))
    other_session = login(gateway)
    foreign_token = _csrf(other_session.get("/dashboard/keys").text)
    for data in ({}, {"csrf": "forged"}, {"csrf": foreign_token}):
        created = browser.post("/dashboard/keys", data={"account": account_id, **data})
        assert created.status_code == 403
        revoked = browser.post(f"/dashboard/keys/{prefix}/revoke", data=data)
        assert revoked.status_code == 403
        assert browser.post("/dashboard/logout", data=data).status_code == 403
    assert len(gateway.store.list_api_keys(account_id)) == keys_before
    found = gateway.store.find_api_key(prefix)
    assert found is not None and found.active
    other_session.close()


def test_key_is_shown_once_then_revoked(gateway: AdminGateway, browser: httpx.Client) -> None:
    account_id, _ = gateway.customer("1.00")
    page = browser.get("/dashboard/keys")
    created = browser.post(
        "/dashboard/keys", data={"account": account_id, "label": "dash", "csrf": _csrf(page.text)}
    )
    assert created.status_code == 200 and created.headers["cache-control"] == "no-store"
    secret = re.search(r'id="new-key-secret">(ck-[^<]+)<', created.text)
    assert secret, "the new key is on the page"
    raw_key = secret.group(1)
    balance = httpx.get(
        gateway.base_url + "/v1/ciyuan/balance", headers={"authorization": f"Bearer {raw_key}"}
    )
    assert balance.status_code == 200, "the key shown works"
    assert raw_key not in browser.get("/dashboard/keys").text, "shown once only"
    prefix = raw_key.split("_")[0]
    revoked = browser.post(f"/dashboard/keys/{prefix}/revoke", data={"csrf": _csrf(page.text)})
    assert revoked.status_code == 303
    found = gateway.store.find_api_key(prefix)
    assert found is not None and not found.active


def test_hostile_names_render_as_text(gateway: AdminGateway, browser: httpx.Client) -> None:
    """An account name, a key label and a model name a client sent, all HTML: never markup."""
    account_id = f"acc_xss{secrets.token_hex(6)}"
    # Account names are validated on creation, so write one the way a bug or an old
    # database could: straight into the table.
    with gateway.store.transaction() as tx:  # type: ignore[attr-defined]
        tx.execute(
            "INSERT INTO accounts (id, name, kind, floor_nanos, created_us) VALUES (?, ?, ?, ?, ?)",
            (account_id, XSS, "customer", 0, SystemClock().now_us()),
        )
    gateway.store.grant(account_id, Amount.parse("1.00"))
    page = browser.get("/dashboard/keys")
    browser.post(
        "/dashboard/keys", data={"account": account_id, "label": XSS, "csrf": _csrf(page.text)}
    )
    assert any(k.label == XSS for k in gateway.store.list_api_keys(account_id))
    _, client_key = gateway.customer("1.00")
    hostile_model = '"><img src=x onerror=alert(2)>'
    httpx.post(
        gateway.base_url + "/v1/chat/completions",
        headers={"authorization": f"Bearer {client_key}"},
        json={"model": hostile_model, "messages": [{"role": "user", "content": "hi"}]},
    )
    for path in ("/dashboard/", "/dashboard/accounts", "/dashboard/keys", "/dashboard/requests"):
        html = browser.get(path).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.get("/dashboard/accounts").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in browser.get("/dashboard/keys").text


def test_security_headers_on_every_response(gateway: AdminGateway, browser: httpx.Client) -> None:
    for response in (
        browser.get("/dashboard/"),
        browser.get("/dashboard/static/dashboard.css"),
        httpx.get(gateway.base_url + "/dashboard/login"),
        browser.get("/dashboard/nowhere"),
    ):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
    html = browser.get("/dashboard/").text
    assert "<script>" not in html and " style=" not in html, "no inline script or style"
    assert "https://" not in html, "no external asset"


def test_expired_or_forged_sessions_go_back_to_login(gateway: AdminGateway) -> None:
    past = AdminAuth(Secret(ADMIN_KEY), session_ttl_s=60, clock=FixedClock(10**15))
    expired = past.new_session()
    forged = AdminAuth(Secret("x" * 32), session_ttl_s=60, clock=SystemClock()).new_session()
    for cookie in (expired, forged, "garbage"):
        response = httpx.get(gateway.base_url + "/dashboard/", cookies={"ciyuan_session": cookie})
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard/login?expired=1"
    page = httpx.get(gateway.base_url + "/dashboard/login?expired=1")
    assert "session has expired" in page.text


def test_logout_ends_the_session_in_the_browser(
    gateway: AdminGateway, browser: httpx.Client
) -> None:
    page = browser.get("/dashboard/")
    assert page.status_code == 200
    out = browser.post("/dashboard/logout", data={"csrf": _csrf(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
    assert (
        'ciyuan_session=""' in out.headers["set-cookie"] or "Max-Age=0" in out.headers["set-cookie"]
    )
    assert browser.get("/dashboard/").status_code == 303
