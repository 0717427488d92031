"""Signed webhooks: budget thresholds reported to an operator's URL, retried, recorded.

A settle that makes a budget's spend cross a soft threshold enqueues one delivery row in its own
transaction (``store/sql_webhooks.py``: once per budget, period and threshold). A worker in each
gateway (:class:`WebhookWorker`, or :func:`deliver_pending` for one pass) POSTs the recorded JSON
with ``x-ciyuan-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
retries failures with exponential backoff, and gives up after a set number of attempts.
Receivers check signatures with :func:`verify_signature` (or the same few lines in any
language) and dedupe on the ``x-ciyuan-delivery`` id: delivery is at least once.
"""

from __future__ import annotations

from ciyuan.webhooks.delivery import (
    DEFAULT_DELIVERY,
    DeliveryPolicy,
    WebhookWorker,
    backoff_s,
    deliver_pending,
)
from ciyuan.webhooks.signing import SIGNATURE_HEADER, sign, verify_signature

__all__ = [
    "DEFAULT_DELIVERY",
    "SIGNATURE_HEADER",
    "DeliveryPolicy",
    "WebhookWorker",
    "backoff_s",
    "deliver_pending",
    "sign",
    "verify_signature",
]
