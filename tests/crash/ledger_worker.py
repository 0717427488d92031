"""A separate process that streams reserve+settle pairs at one account and acknowledges each.

``python -m tests.crash.ledger_worker URL ACCOUNT_ID TAG COUNT ACK_FILE [COST_NANOS]``

A line is appended to ACK_FILE (and flushed to the OS, which survives SIGKILL of this process)
only after the store returned, that is after the commit: ``reserved RID``, ``settled RID
CHARGED_NANOS`` or ``refused RID``. The tests compare these acknowledgements with the database.
"""

from __future__ import annotations

import sys

from ciyuan.errors import InsufficientCredit
from ciyuan.metering.ports import UsageEvent
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store


def main(argv: list[str]) -> None:
    url, account_id, tag, count, ack_path = argv[:5]
    cost = Amount(int(argv[5]) if len(argv) > 5 else 1_000_000_000)
    store = open_store(url)
    with open(ack_path, "a", buffering=1) as ack:
        for index in range(int(count)):
            request_id = f"{tag}-{index}"
            try:
                hold = store.reserve(account_id, cost, request_id=request_id, timeout_s=2)
            except InsufficientCredit:
                ack.write(f"refused {request_id}\n")
                continue
            ack.write(f"reserved {request_id}\n")
            event = UsageEvent(
                request_id=request_id, created_us=1, account_id=account_id, api_key_id="key_worker",
                api="chat", model="m", upstream="demo", status="ok", http_status=200,
            )  # fmt: skip
            settled = store.settle(hold, cost, event)
            ack.write(f"settled {request_id} {settled.charged.nanos}\n")
    store.close()


if __name__ == "__main__":
    main(sys.argv[1:])
