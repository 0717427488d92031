"""The dashboard against a hostile web, over real HTTP (what test_dashboard_http leaves out):

- a cross-origin form POST riding a valid session cookie, without the page's CSRF token, in
  every encoding a foreign page can send, is refused and changes nothing;
- the Content-Security-Policy of every page, error pages included, allows scripts from the
  dashboard's own origin only, and no page carries inline script or event handlers;
- customer-controlled strings (an account name, a key label, a model name that reached real
  usage rows through a catch-all route) and reflected URL parts render escaped everywhere.
"""

from __future__ import annotations

import re
import secrets

import httpx

from ciyuan.clock import SystemClock
from ciyuan.pricing.money import Amount
from tests.security.conftest import HardenedGateway, csrf_of, dashboard_login

PAYLOADS = (
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "'onmouseover='alert(3)",
)
EVIL_ORIGIN = "https://evil.example"


def test_cross_origin_posts_with_the_session_cookie_change_nothing(
    hardened: HardenedGateway,
) -> None:
    account_id, client_key = hardened.customer("1.00")
    prefix = client_key.split("_", 1)[0]
    keys_before = len(hardened.store.list_api_keys(account_id))
    browser = dashboard_login(hardened)
    try:
        cross_site = {"origin": EVIL_ORIGIN, "referer": EVIL_ORIGIN + "/attack"}
        form = {"account": account_id, "label": "planted"}
        attempts = [
            # What an HTML form on another site can send: urlencoded, multipart, text/plain.
            {"data": form},
            {"files": {"account": (None, account_id)}},
            {
                "content": f"account={account_id}",
                "headers": {**cross_site, "content-type": "text/plain"},
            },
            {"json": form},
        ]
        for attempt in attempts:
            attempt.setdefault("headers", cross_site)
            for path in (
                "/dashboard/keys",
                f"/dashboard/keys/{prefix}/revoke",
                "/dashboard/logout",
            ):
                response = browser.post(path, **attempt)  # type: ignore[arg-type]
                assert response.status_code == 403, (path, attempt, response.text)
        assert len(hardened.store.list_api_keys(account_id)) == keys_before
        found = hardened.store.find_api_key(prefix)
        assert found is not None and found.active
        assert browser.get("/dashboard/").status_code == 200, "the session survived"
    finally:
        browser.close()


def _csp(response: httpx.Response) -> dict[str, list[str]]:
    policy = response.headers["content-security-policy"]
    return {
        parts[0]: parts[1:]
        for parts in (directive.split() for directive in policy.split(";"))
        if parts
    }


def test_every_page_forbids_inline_script(hardened: HardenedGateway) -> None:
    account_id, _ = hardened.customer("1.00")
    browser = dashboard_login(hardened)
    try:
        pages = [
            browser.get(path)
            for path in (
                "/dashboard/",
                "/dashboard/accounts",
                "/dashboard/keys",
                "/dashboard/requests",
                "/dashboard/requests/req_unknown",
                "/dashboard/prices",
                "/dashboard/nowhere",
            )
        ]
        pages.append(browser.post("/dashboard/keys", data={"account": account_id}))  # 403
        pages.append(httpx.get(hardened.base_url + "/dashboard/login"))
        wrong = httpx.Client(base_url=hardened.base_url)
        form = wrong.get("/dashboard/login")
        pages.append(
            wrong.post("/dashboard/login", data={"admin_key": "no", "csrf": csrf_of(form.text)})
        )
        wrong.close()
    finally:
        browser.close()
    assert {page.status_code for page in pages} >= {200, 401, 403, 404}
    for page in pages:
        csp = _csp(page)
        assert csp["default-src"] == ["'none'"], page.url
        assert csp["script-src"] == ["'self'"], page.url
        assert csp["object-src" if "object-src" in csp else "default-src"] == ["'none'"]
        assert csp["base-uri"] == ["'none'"] and csp["frame-ancestors"] == ["'none'"]
        html = page.text
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), "inline script"
        assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
        assert "javascript:" not in html


def test_customer_controlled_strings_render_escaped(hardened: HardenedGateway) -> None:
    hostile_account = f"acc_xss{secrets.token_hex(6)}"
    # Account names are validated on creation; an old database or a bug could still hold one.
    with hardened.store.transaction() as tx:  # type: ignore[attr-defined]
        tx.execute(
            "INSERT INTO accounts (id, name, kind, floor_nanos, created_us) VALUES (?, ?, ?, ?, ?)",
            (hostile_account, PAYLOADS[0], "customer", 0, SystemClock().now_us()),
        )
    hardened.store.grant(hostile_account, Amount.parse("1.00"))
    with hardened.admin() as admin:
        for label in PAYLOADS:
            made = admin.post("/admin/keys", json={"account": hostile_account, "label": label})
            assert made.status_code in (200, 201), made.text
    # Model names a client chose: the catch-all route sends them upstream, so they are metered
    # and land in usage rows (answered or refused by the demo, either way recorded).
    _, client_key = hardened.customer("1.00")
    for model in PAYLOADS:
        httpx.post(
            hardened.base_url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {client_key}"},
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
    recent = hardened.store.recent_usage(limit=20)
    assert {e.model for e in recent} >= set(PAYLOADS), "the hostile models reached usage rows"
    request_id = next(e.request_id for e in recent if e.model == PAYLOADS[1])

    browser = dashboard_login(hardened)
    try:
        pages = {
            path: browser.get(path).text
            for path in (
                "/dashboard/",
                "/dashboard/accounts",
                "/dashboard/keys",
                "/dashboard/requests",
                f"/dashboard/requests/{request_id}",
                # Reflected: a path parameter and query strings.
                "/dashboard/requests/" + PAYLOADS[0],
                "/dashboard/?range=" + PAYLOADS[1],
                "/dashboard/nowhere" + PAYLOADS[1],
            )
        }
    finally:
        browser.close()
    login = httpx.get(hardened.base_url + "/dashboard/login?expired=" + PAYLOADS[1]).text
    for path, html in [*pages.items(), ("/dashboard/login", login)]:
        for payload in PAYLOADS:
            assert payload not in html, (path, payload)
        assert "<img" not in html and "<script>" not in html, path
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["/dashboard/accounts"]
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in pages["/dashboard/requests"]
    assert "&#39;onmouseover=&#39;alert(3)" in pages["/dashboard/keys"]
