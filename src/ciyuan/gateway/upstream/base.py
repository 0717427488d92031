"""The upstream seam: where Ciyuan sends a request, with which credentials and time limits.

Upstream hosts come only from the operator's settings; no header or body field of a client can
choose one, and provider keys are never returned to a client. The demo kind speaks both wire
dialects and alone receives the client's ``x-demo-*`` fault directives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ciyuan.apikeys import Secret

UpstreamKind = Literal["openai", "anthropic", "demo"]
ANTHROPIC_VERSION_DEFAULT: Final = "2023-06-01"
_PASSED_TO_ANTHROPIC: Final = ("anthropic-version", "anthropic-beta")


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    kind: UpstreamKind
    base_url: str
    """Ends with the API version, e.g. ``https://api.openai.com/v1``."""
    api_key: Secret | None
    timeout_s: float
    connect_timeout_s: float
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def speaks(self, dialect: str) -> bool:
        return self.kind in ("demo", dialect)

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self, dialect: str, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept-encoding": "identity",
            **self.extra_headers,
        }
        if dialect == "anthropic":
            for name in _PASSED_TO_ANTHROPIC:
                if name in client_headers:
                    headers[name] = client_headers[name]
            headers.setdefault("anthropic-version", ANTHROPIC_VERSION_DEFAULT)
            if self.api_key is not None:
                headers["x-api-key"] = self.api_key.reveal()
        elif self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key.reveal()}"
        if self.kind == "demo":
            headers.update({k: v for k, v in client_headers.items() if k.startswith("x-demo-")})
        return headers
