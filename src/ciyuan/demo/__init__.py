"""The built-in demo upstream: a stand-in for OpenAI and Anthropic that speaks their real wire
protocols (JSON and SSE, usage blocks, error bodies) so Ciyuan works and is tested offline.

Replies are deterministic (same prompt, same reply), usage is counted with ``ciyuan.tokens``,
and ``x-demo-*`` request headers simulate caching, reasoning and faults (see ``faults.py``).
"""

from __future__ import annotations

from .app import BODY_BYTES_MAX, create_app

__all__ = ["BODY_BYTES_MAX", "create_app"]
