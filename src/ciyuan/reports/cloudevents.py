"""Usage events as CloudEvents 1.0 (structured JSON), the shape OpenMeter ingests.

``id`` is the request id and ``source`` names this gateway, so a receiver that deduplicates on
(source, id), as OpenMeter does, counts a request once however often it is exported. Money
travels as an exact decimal string and as integer nanos, never as a float.
"""

from __future__ import annotations

from typing import Any, Final

from ciyuan.metering.ports import UsageEvent
from ciyuan.reports.invoice import iso

EVENT_TYPE: Final = "ciyuan.usage"
DEFAULT_SOURCE: Final = "ciyuan"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"


def to_cloudevent(
    event: UsageEvent, *, account_name: str, key_prefix: str, source: str = DEFAULT_SOURCE
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "type": EVENT_TYPE,
        "source": source,
        "id": event.request_id,
        "time": iso(event.created_us),
        "subject": account_name,
        "datacontenttype": "application/json",
        "data": {
            "account_id": event.account_id, "api_key": key_prefix, "api": event.api,
            "model": event.model, "upstream": event.upstream, "status": event.status,
            "http_status": event.http_status, "input_tokens": event.input_tokens,
            "cached_tokens": event.cached_tokens, "output_tokens": event.output_tokens,
            "reasoning_tokens": event.reasoning_tokens,
            "total_tokens": event.input_tokens + event.output_tokens, "cost": str(event.cost),
            "cost_nanos": event.cost.nanos, "latency_ms": event.latency_ms,
            "ttft_ms": event.ttft_ms,
        },
    }  # fmt: skip
