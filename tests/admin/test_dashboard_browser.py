"""The dashboard in a real headless Chromium (Debian's, driven by Playwright).

After real calls through the gateway with the openai SDK: log in, see both charts drawn with
data, create a key and see its secret once, revoke it, log out. Screenshots of every page go
to ``test-artifacts/dashboard/`` (git-ignored). No script may run that the page did not ship:
a hostile key label must never open a dialog. Skips on a laptop without Chromium or
Playwright; fails in CI.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from ciyuan.pricing.money import Amount
from tests.admin.conftest import ADMIN_KEY, AdminGateway
from tests.conftest import _unavailable
from tests.e2e.conftest import tracked

CHROMIUM = os.environ.get("CIYUAN_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        _unavailable("Playwright", error)
    if not shutil.which(CHROMIUM):
        _unavailable("Chromium", FileNotFoundError(CHROMIUM))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _shot(page: Any, backend: str, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{backend}-{name}.png"), full_page=True)


def test_dashboard_in_chromium(
    gateway: AdminGateway, chromium: Any, request: pytest.FixtureRequest
) -> None:
    backend = "postgres" if gateway.db_url.startswith("postgres") else "sqlite"
    account_id, key = gateway.customer("10.00")
    gateway.store.set_budget(
        account_id=account_id,
        api_key_id=None,
        period="month",
        amount=Amount.parse("1.00"),
        thresholds_pct=(50, 80, 100),
    )
    client = tracked(
        openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    )
    for i in range(6):
        client.chat.completions.create(
            model="gpt-4o-mini" if i % 2 else "gpt-4o",
            messages=[{"role": "user", "content": f"Tell me about the number {i}."}],
        )

    context = chromium.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    dialogs: list[str] = []

    def on_dialog(dialog: Any) -> None:
        # The revoke button asks for confirmation; any other dialog is an injected script.
        dialogs.append(dialog.message)
        if dialog.message.startswith("Revoke"):
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    console_errors: list[str] = []
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(gateway.base_url + "/dashboard/")
        assert page.url.endswith("/dashboard/login")
        _shot(page, backend, "1-login")
        page.fill("#admin_key", "not the key")
        page.click("button[type=submit]")
        assert page.locator(".notice-error").is_visible()
        page.fill("#admin_key", ADMIN_KEY)
        page.click("button[type=submit]")
        page.wait_for_url("**/dashboard/")

        charts = page.locator("svg.chart")
        assert charts.count() == 2
        assert page.locator("svg.chart rect.bar").count() >= 2, "the charts show data"
        assert page.locator("#total-spend").inner_text() != "$0"
        assert "gpt-4o-mini" in page.locator(".ranked").first.inner_text()
        assert "month" in page.locator("table.budgets").inner_text()
        _shot(page, backend, "2-overview")

        page.goto(gateway.base_url + "/dashboard/keys")
        page.select_option("select[name=account]", account_id)
        page.fill("input[name=label]", "<img src=x onerror=alert(1)>")
        page.click("form.inline-form button[type=submit]")
        secret = page.locator("#new-key-secret").inner_text().strip()
        assert secret.startswith("ck-")
        _shot(page, backend, "3-key-created")
        page.goto(gateway.base_url + "/dashboard/keys")
        assert secret not in page.content(), "a key is shown once"

        prefix = secret.split("_")[0]
        row = page.locator("tr", has_text=prefix)
        row.locator("button.danger").click()
        page.wait_for_url("**/dashboard/keys?revoked=*")
        assert "revoked" in page.locator("tr", has_text=prefix).inner_text()
        found = gateway.store.find_api_key(prefix)
        assert found is not None and not found.active
        _shot(page, backend, "4-key-revoked")

        for name in ("requests", "accounts", "prices"):
            page.goto(f"{gateway.base_url}/dashboard/{name}")
            _shot(page, backend, f"5-{name}")
        receipt = page.goto(gateway.base_url + "/dashboard/requests")
        assert receipt is not None
        page.locator("a.receipt").first.click()
        assert "request_id" in page.locator("pre.json").inner_text()
        _shot(page, backend, "6-receipt")

        page.goto(gateway.base_url + "/dashboard/")
        page.click("form.logout button")
        page.wait_for_url("**/dashboard/login")
        page.goto(gateway.base_url + "/dashboard/keys")
        assert page.url.endswith("/dashboard/login")
    finally:
        context.close()
    assert [d for d in dialogs if "Revoke" not in d] == [], "no injected script ran"
    # The one expected error: the wrong admin key's 401 at the start.
    unexpected = [e for e in console_errors if "status of 401" not in e]
    assert unexpected == [], "no CSP violation, missing asset or script error"
