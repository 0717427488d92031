"""``ciyuan serve`` on the embedded default: a fresh directory, no settings at all. It must create
``ciyuan.db`` there, run the demo upstream itself, say where it listens and how to make a key,
and serve a charged call through the OpenAI SDK."""

from __future__ import annotations

from pathlib import Path

import openai

from ciyuan import apikeys
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.conftest import CIYUAN, Process, child_env, free_port


def test_serve_runs_on_the_embedded_default(tmp_path: Path) -> None:
    port = free_port()
    process = Process(
        [*CIYUAN, "serve", "--port", str(port)], child_env(), tmp_path / "serve.log", cwd=tmp_path
    )
    try:
        process.wait_for(r"Ciyuan gateway listening on http://127\.0\.0\.1:\d+")
        output = process.log.read_text()
        assert "database: sqlite:///ciyuan.db" in output
        assert "built-in demo" in output and "ciyuan keys create" in output
        assert (tmp_path / "ciyuan.db").exists()

        store = open_store(f"sqlite:///{tmp_path / 'ciyuan.db'}")
        account = store.create_account("laptop")
        store.grant(account.id, Amount.parse("1"))
        new = apikeys.generate()
        store.create_api_key(account.id, new.prefix, new.hash_hex, None)
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key=new.secret.reveal(), max_retries=0
        )
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}], stream=True
        )
        assert "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        event = store.usage_event(raw.headers["x-ciyuan-request-id"])
        assert event is not None and event.cost.nanos > 0
        assert store.balance(account.id).available == Amount.parse("1") - event.cost
        client.close()
        store.close()
    finally:
        process.stop()
