"""Limits on what one request may ask for, with named defaults from settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ciyuan.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class RequestLimits:
    body_bytes_max: int
    body_timeout_s: float
    header_bytes_max: int
    output_tokens_max: int
    messages_max: int

    def check(self, body: dict[str, Any], output_limit: int | None) -> None:
        if output_limit is not None and output_limit > self.output_tokens_max:
            raise InvalidRequest(
                f"max tokens of {output_limit} exceeds this gateway's limit of "
                f"{self.output_tokens_max}",
                param="max_tokens",
            )
        for field in ("messages", "input"):
            items = body.get(field)
            if isinstance(items, list) and len(items) > self.messages_max:
                raise InvalidRequest(
                    f"{field} has {len(items)} items; the limit is {self.messages_max}", param=field
                )
