"""Report parameters and rows as JSON, shared by the admin API, the dashboard and self-service.

The store's ``usage_report`` and ``recent_usage`` (``ciyuan.metering.ports.ReportStore``) do
the work; this module parses what a caller asks for and formats what comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from ciyuan.clock import US_PER_S, us_to_datetime
from ciyuan.errors import InvalidRequest
from ciyuan.metering.ports import GROUPS, ReportRow, UsageEvent

RECENT_MAX: Final = 500


def row_to_json(row: ReportRow) -> dict[str, Any]:
    return {
        "group": row.group,
        "requests": row.requests,
        "errors": row.errors,
        "input_tokens": row.input_tokens,
        "cached_tokens": row.cached_tokens,
        "output_tokens": row.output_tokens,
        "reasoning_tokens": row.reasoning_tokens,
        "cost": str(row.cost),
        "latency_ms_p50": row.latency_ms_p50,
        "latency_ms_p99": row.latency_ms_p99,
        "ttft_ms_p50": row.ttft_ms_p50,
    }


def parse_group_by(text: str | None, allowed: Sequence[str] = GROUPS) -> list[str]:
    names = [part.strip() for part in (text or "").split(",") if part.strip()]
    for name in names:
        if name not in allowed:
            raise InvalidRequest(
                f"group_by {name!r} is not one of {', '.join(allowed)}", param="group_by"
            )
    if len(set(names)) != len(names):
        raise InvalidRequest("group_by names a field twice", param="group_by")
    return names


def parse_time_us(text: str | None, param: str) -> int | None:
    """``2026-11-01`` (midnight UTC) or an ISO 8601 time with its offset, as microseconds."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
        else:
            moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(
            f"{param} must be a date (2026-11-01) or an ISO 8601 time with an offset",
            param=param,
        ) from None
    if moment.tzinfo is None:
        raise InvalidRequest(f"{param} needs a UTC offset (…Z or …+08:00)", param=param)
    return int(moment.timestamp()) * US_PER_S + moment.microsecond


def event_to_json(event: UsageEvent) -> dict[str, Any]:
    return {
        "request_id": event.request_id,
        "created_at": us_to_datetime(event.created_us).isoformat().replace("+00:00", "Z"),
        "account_id": event.account_id,
        "api_key_id": event.api_key_id,
        "api": event.api,
        "model": event.model,
        "status": event.status,
        "http_status": event.http_status,
        "input_tokens": event.input_tokens,
        "cached_tokens": event.cached_tokens,
        "output_tokens": event.output_tokens,
        "reasoning_tokens": event.reasoning_tokens,
        "usage_source": event.usage_source,
        "cost": str(event.cost),
        "latency_ms": event.latency_ms,
        "ttft_ms": event.ttft_ms,
        "error_code": event.error_code,
        "receipt_url": f"/v1/ciyuan/receipts/{event.request_id}",
    }
