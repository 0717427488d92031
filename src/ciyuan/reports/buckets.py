"""Time buckets and the labels reports show for them: UTC, microseconds since the epoch.

A bucket starts at a multiple of its width, so an hour or a day bucket is the same whatever
query computed it (raw events, hourly or daily rollups), and labels sort chronologically.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Final

from ciyuan.pricing.catalog import Catalog

HOUR_US: Final = 3_600_000_000
DAY_US: Final = 24 * HOUR_US
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def floor_us(at_us: int, width_us: int) -> int:
    return at_us - at_us % width_us


def ceil_us(at_us: int, width_us: int) -> int:
    return -floor_us(-at_us, width_us)


def datetime_of(at_us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=at_us)


def us_of(at: datetime) -> int:
    assert at.tzinfo is not None, "timestamps are aware (UTC)"
    delta = at - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def day_label(at_us: int) -> str:
    """``2026-11-25``"""
    return datetime_of(at_us).strftime("%Y-%m-%d")


def hour_label(at_us: int) -> str:
    """``2026-11-25T13:00`` (UTC; sorts chronologically)."""
    return datetime_of(at_us).strftime("%Y-%m-%dT%H:00")


@cache
def _catalog() -> Catalog:
    return Catalog.load_default()


@cache
def provider_of(model: str) -> str:
    """The provider of a model: the shipped catalog's, else its ``provider/`` prefix, else
    ``unknown``. Usage events do not record it, so reports derive it from the model name."""
    price = _catalog().price_for(model)
    if price is not None:
        return price.provider
    if "/" in model:
        return model.split("/", 1)[0]
    return "unknown"
