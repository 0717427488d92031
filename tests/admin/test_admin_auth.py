"""Who may use the admin API: only the admin key, and the admin key only there.

Over real HTTP: every admin route refuses no key, a wrong key and a client API key with 401 in
the API's error shape; the admin key is refused on the client routes; a gateway without an
admin key answers 404 saying how to enable it. The session and CSRF tokens are checked
in-process with a fixed clock, so expiry is tested without sleeping.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ciyuan.admin.auth import AdminAuth, AdminConfig, admin_config
from ciyuan.admin.openapi import OPENAPI
from ciyuan.apikeys import Secret
from ciyuan.clock import FixedClock
from ciyuan.settings import Settings
from tests.admin.conftest import ADMIN_KEY, AdminGateway
from tests.e2e.conftest import start_gateway


def _concrete(path: str) -> str:
    return (
        path.replace("{account}", "somebody")
        .replace("{key}", "ck-somekey1")
        .replace("{request_id}", "req_x")
    )


ROUTES = [
    (method.upper(), _concrete(path)) for path, item in OPENAPI["paths"].items() for method in item
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_admin_route_refuses_without_the_admin_key(
    gateway: AdminGateway, method: str, path: str
) -> None:
    _, client_key = gateway.customer("1.00")
    for authorization in (None, "Bearer", "Bearer wrong-admin-key-123456", f"Bearer {client_key}",
                          f"Basic {ADMIN_KEY}", f"Bearer {ADMIN_KEY}x"):  # fmt: skip
        headers = {"authorization": authorization} if authorization else {}
        response = httpx.request(method, gateway.base_url + path, headers=headers, json={})
        assert response.status_code == 401, (authorization, response.text)
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert client_key not in response.text and ADMIN_KEY not in response.text


def test_client_key_in_x_api_key_does_not_reach_admin(gateway: AdminGateway) -> None:
    _, client_key = gateway.customer("1.00")
    response = httpx.get(gateway.base_url + "/admin/accounts", headers={"x-api-key": client_key})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/ciyuan/balance"),
        ("GET", "/v1/ciyuan/usage"),
        ("GET", "/v1/ciyuan/receipts/req_x"),
    ],
)
def test_the_admin_key_is_not_a_client_key(gateway: AdminGateway, method: str, path: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for header in ("authorization", "x-api-key"):
        value = f"Bearer {ADMIN_KEY}" if header == "authorization" else ADMIN_KEY
        response = httpx.request(
            method, gateway.base_url + path, headers={header: value}, json=body
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "invalid_api_key"


def test_session_cookie_does_not_authorize_the_json_api(gateway: AdminGateway) -> None:
    """The API takes the bearer key only: a cross-site request riding the dashboard's cookie
    could otherwise grant credit."""
    auth = AdminAuth(Secret(ADMIN_KEY), session_ttl_s=60, clock=FixedClock(2 * 10**15))
    cookie = auth.new_session()
    response = httpx.post(
        gateway.base_url + "/admin/accounts",
        json={"name": "via-cookie"},
        cookies={"ciyuan_session": cookie},
    )
    assert response.status_code == 401


def test_without_an_admin_key_admin_and_dashboard_are_disabled(
    demo_upstream: str, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ciyuan.db'}"
    extras: list[dict[str, str]] = [{}, {"CIYUAN_ADMIN_KEY": "too-short"}]
    for extra in extras:
        process, base_url = start_gateway(db_url, demo_upstream, tmp_path / "gw.log", **extra)
        try:
            api = httpx.get(base_url + "/admin/accounts")
            assert api.status_code == 404
            assert "CIYUAN_ADMIN_KEY" in api.json()["error"]["message"]
            page = httpx.get(base_url + "/dashboard/")
            assert page.status_code == 404 and "CIYUAN_ADMIN_KEY" in page.text
            assert "content-security-policy" in page.headers
        finally:
            process.stop()


# ---- in-process: the admin key, sessions and CSRF ------------------------------------------


def test_admin_config_reads_the_named_environment_variable() -> None:
    settings = Settings(admin_key_env="MY_ADMIN_KEY", admin_session_ttl_s=60)
    assert admin_config(settings, {}).key is None
    assert admin_config(settings, {"MY_ADMIN_KEY": "short"}).key is None
    config = admin_config(settings, {"MY_ADMIN_KEY": "k" * 32, "CIYUAN_ADMIN_KEY": "x" * 32})
    assert config.key is not None and config.key.reveal() == "k" * 32
    assert "k" * 32 not in repr(config)
    assert AdminConfig(None, "MY_ADMIN_KEY", 1).disabled_reason is not None


def test_admin_key_check() -> None:
    auth = AdminAuth(Secret("k" * 32), session_ttl_s=60, clock=FixedClock())
    assert auth.is_admin_key("k" * 32)
    for wrong in (None, "", "k" * 31, "k" * 33, "K" * 32, "ключ" * 8):
        assert not auth.is_admin_key(wrong)


def test_sessions_expire_and_resist_tampering() -> None:
    clock = FixedClock()
    auth = AdminAuth(Secret("k" * 32), session_ttl_s=60, clock=clock)
    cookie = auth.new_session()
    session_id = auth.session_id(cookie)
    assert session_id is not None
    expires, sid, mac = cookie.split(".")
    assert auth.session_id(f"{int(expires) + 10**9}.{sid}.{mac}") is None, "extended expiry"
    assert auth.session_id(f"{expires}.other.{mac}") is None, "another session id"
    assert auth.session_id(cookie + "x") is None
    assert auth.session_id("") is None and auth.session_id("a.b") is None
    other_key = AdminAuth(Secret("j" * 32), session_ttl_s=60, clock=clock)
    assert other_key.session_id(cookie) is None, "rotating the admin key ends every session"
    clock.advance(59)
    assert auth.session_id(cookie) == session_id
    clock.advance(1)
    assert auth.session_id(cookie) is None


def test_csrf_tokens_are_bound_to_their_session() -> None:
    auth = AdminAuth(Secret("k" * 32), session_ttl_s=60, clock=FixedClock())
    one = auth.session_id(auth.new_session())
    two = auth.session_id(auth.new_session())
    assert one and two and one != two
    assert auth.csrf_ok(one, auth.csrf_token(one))
    assert not auth.csrf_ok(one, auth.csrf_token(two))
    assert not auth.csrf_ok(one, None) and not auth.csrf_ok(one, "ü")
    nonce = auth.new_login_nonce()
    assert auth.login_ok(nonce, auth.login_token(nonce))
    assert not auth.login_ok(nonce, auth.login_token(auth.new_login_nonce()))
    assert not auth.login_ok(None, auth.login_token(nonce))
