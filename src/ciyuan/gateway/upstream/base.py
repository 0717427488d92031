"""The upstream seam: where Ciyuan sends a request, with which credentials and time limits.

Upstream hosts come only from the operator's settings; no header or body field of a client can
choose one, and provider keys are never returned to a client.
"""

from __future__ import annotations

from dataclasses import dataclass

from ciyuan.apikeys import Secret


@dataclass(frozen=True, slots=True)
class Upstream:
    name: str
    base_url: str
    """Ends with the API version, e.g. ``https://api.openai.com/v1``."""
    api_key: Secret | None
    timeout_s: float
    connect_timeout_s: float

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if self.api_key is not None:
            headers["authorization"] = f"Bearer {self.api_key.reveal()}"
        return headers
