"""A gateway at ``durability = "power"``: concurrent requests share commits, and every
answered request is charged, as the ledger on disk shows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai

from ciyuan.pricing.money import Amount
from ciyuan.store import open_store
from tests.contract.ledger_helpers import raw
from tests.e2e.conftest import Gateway, start_gateway


def test_concurrent_requests_at_power_durability_are_each_charged_once(
    demo_upstream: str, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'ciyuan.db'}"
    store = open_store(db_url)
    process, base_url = start_gateway(
        db_url, demo_upstream, tmp_path / "gateway.log", CIYUAN_DURABILITY="power"
    )
    try:
        account, key = Gateway(base_url=base_url, db_url=db_url, store=store).customer("5")

        async def calls() -> list[tuple[str, Amount]]:
            async with openai.AsyncOpenAI(base_url=f"{base_url}/v1", api_key=key) as client:

                async def one(n: int) -> tuple[str, Amount]:
                    raw = await client.chat.completions.with_raw_response.create(
                        model="gpt-4o-mini",
                        messages=[{"role": "user", "content": f"count to {n}"}],
                        max_tokens=20,
                    )
                    return raw.headers["x-ciyuan-request-id"], Amount.parse(
                        raw.headers["x-ciyuan-cost"]
                    )

                return await asyncio.gather(*(one(n) for n in range(24)))

        answered = asyncio.run(calls())
        metrics = httpx.get(f"{base_url}/metrics").text
    finally:
        process.stop()
    charged = {
        reference: Amount(nanos)
        for reference, nanos in raw(
            db_url,
            "SELECT reference, amount_nanos FROM transfers WHERE debit_account_id = ? "
            "AND kind = 'charge'",
            (account,),
        )
    }
    assert charged == dict(answered)
    balance = store.get_account(account).balance
    assert balance.debits_pending == 0
    assert Amount(balance.credits_posted - balance.debits_posted) == Amount.parse("5") - sum(
        (cost for _, cost in answered), Amount.zero()
    )
    assert store.reconcile().ok and store.verify_chain().ok
    # 24 requests at once: reserves and settles share commits (one fsync each at power).
    commits = _sample(metrics, "ciyuan_ledger_commits_total")
    writes = _sample(metrics, "ciyuan_ledger_writes_committed_total")
    assert writes >= 48 and commits < writes
    store.close()


def _sample(exposition: str, name: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} is not exported")
