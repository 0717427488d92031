"""Every setting, declared once: name, environment variable, default, type and meaning.

Sources, highest first: command-line options (applied by the CLI), ``CIYUAN_*`` environment
variables, ``ciyuan.toml`` in the working directory (or the file named by ``CIYUAN_CONFIG``),
then the defaults below. The environment variable of a field is ``CIYUAN_`` + its name in upper
case: ``body_bytes_max`` is ``CIYUAN_BODY_BYTES_MAX``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_DEFAULT: Final = "ciyuan.toml"
DEMO_UPSTREAM: Final = "demo"


class UpstreamConfig(BaseModel):
    """One provider endpoint. Its key comes from the named environment variable, not the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64)
    kind: Literal["openai", "anthropic", "demo"] = "openai"
    base_url: str = Field(description="Ends with the API version, e.g. https://api.openai.com/v1")
    api_key_env: str | None = None
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers sent upstream."
    )
    timeout_s: float = Field(600.0, gt=0)
    connect_timeout_s: float = Field(10.0, gt=0)


class DeploymentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str
    model: str | None = Field(None, description="The upstream's name for the model, if different.")
    weight: int = Field(1, ge=1, le=1_000_000)


class RouteConfig(BaseModel):
    """Which deployments serve a model: tried in weighted random order, then the rest in turn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="A model name or a glob such as 'gpt-4o*'.")
    deployments: list[DeploymentConfig] = Field(min_length=1)


class ModelLimitConfig(BaseModel):
    """Rate limits for the calls of one API key to the models a glob names; ``None``: none.

    Counted per key and per model name: with ``model = "gpt-4o*"``, gpt-4o and gpt-4o-mini
    each have their own ``rpm`` on each key. The first entry whose glob matches applies."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="A model name or a glob such as 'gpt-4o*'.")
    rpm: int | None = Field(None, ge=1, description="Requests per minute per key and model.")
    tpm: int | None = Field(
        None, ge=1, description="Model tokens (input + output) per minute per key and model."
    )
    concurrency: int | None = Field(
        None, ge=1, description="Requests in flight at once per key and model."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIYUAN_", extra="forbid", frozen=True)

    db: str = Field(
        "sqlite:///ciyuan.db", description="Database URL: sqlite:///path or postgresql://…"
    )
    durability: Literal["process", "power"] = Field(
        "process",
        description="SQLite durability: survive a killed process, or a power cut too (an fsync per "
        "commit batch; writes that arrive together share one).",
    )
    log_format: Literal["json", "text"] = Field(
        "json", description="Logs on stderr: one JSON object per line, or plain text."
    )
    log_requests: bool = Field(True, description="Log one line per metered request (no content).")
    log_prompts: bool = Field(
        False,
        description="Put each request's prompt and completion text on its JSON request log line "
        "(fields 'prompt' and 'completion'): customer content in the logs, for debugging only. "
        "API keys are never logged either way.",
    )
    stream_progress_interval_s: float = Field(
        2.0,
        ge=0,
        description="How often a stream records what it has delivered so far, so that a gateway "
        "killed mid-stream still bills it: the hold's sweeper charges the last mark instead of "
        "voiding the hold. At most this much of a stream's output goes unbilled (0: never mark).",
    )
    tracing: bool = Field(
        True,
        description="OpenTelemetry spans of the pipeline stages; no-ops unless an SDK is set up.",
    )
    store_inline: bool = Field(
        True,
        description="SQLite: run ledger transactions on the event loop, committed in groups.",
    )
    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8400, ge=0, le=65535, description="Port the gateway listens on.")
    tls_certfile: Path | None = Field(
        None,
        description="PEM certificate (chain) for native HTTPS; with tls_keyfile the gateway "
        "serves https only. Unset: plain http (terminate TLS at a reverse proxy, docs/tls.md).",
    )
    tls_keyfile: Path | None = Field(
        None, description="PEM private key of tls_certfile; set both or neither."
    )
    upstream_url: str = Field(
        DEMO_UPSTREAM,
        description="OpenAI-compatible upstream base URL (…/v1), or 'demo' for the built-in one.",
    )
    upstream_api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Environment variable holding the upstream provider key (never the key).",
    )
    upstream_timeout_s: float = Field(
        600.0, gt=0, description="Longest wait for an upstream response."
    )
    upstream_connect_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait to connect upstream."
    )
    reservation_timeout_s: float = Field(
        900.0,
        gt=0,
        description="A hold not settled by then is voided, so a crash cannot keep credit.",
    )
    sweep_interval_s: float = Field(30.0, gt=0, description="How often overdue holds are voided.")
    output_tokens_default: int = Field(
        4096, gt=0, description="Output tokens reserved for when a request sets no max_tokens."
    )
    body_bytes_max: int = Field(8 * 1024 * 1024, gt=0, description="Largest request body accepted.")
    auth_cache_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long a process trusts a key lookup: the bound on revocation delay.",
    )
    allow_unpriced_models: bool = Field(
        False, description="Serve models with no price, charging nothing (off: refused with 403)."
    )
    # ---- rate limits and scale-out (gateway/admission.py, keycache/, cli/serve.py) ----------
    redis: str | None = Field(
        None,
        description="Redis URL (redis://…) for rate limits and key revocations shared by every "
        "gateway process; unset: in-process rate limits, revocations bounded by the auth TTL.",
    )
    workers: int = Field(
        1, ge=1, le=64, description="Gateway processes sharing the listening socket."
    )
    rate_rpm_default: int | None = Field(
        None, ge=1, description="Requests per minute per API key, unless the key sets its own."
    )
    rate_tpm_default: int | None = Field(
        None,
        ge=1,
        description="Model tokens (input + output) per minute per API key, unless the key sets "
        "its own; charged at admission with prompt + max output, corrected at settle.",
    )
    rate_input_tpm_default: int | None = Field(
        None, ge=1, description="Input model tokens per minute per API key."
    )
    rate_output_tpm_default: int | None = Field(
        None, ge=1, description="Output model tokens per minute per API key."
    )
    concurrency_max_default: int | None = Field(
        None,
        ge=1,
        description="Requests in flight at once per API key, unless the key sets its own.",
    )
    account_rpm: int | None = Field(
        None, ge=1, description="Requests per minute per account, over all of its keys."
    )
    account_tpm: int | None = Field(
        None, ge=1, description="Model tokens per minute per account, over all of its keys."
    )
    account_concurrency_max: int | None = Field(
        None, ge=1, description="Requests in flight at once per account, over all of its keys."
    )
    model_limits: list[ModelLimitConfig] = Field(
        default_factory=list,
        description="Per-model limits on top of the others, counted per API key and model name "
        "(ciyuan.toml [[model_limits]] or CIYUAN_MODEL_LIMITS as JSON): "
        '[{"model": "gpt-4o*", "rpm": 10, "tpm": null, "concurrency": 2}]; first match applies.',
    )
    rate_limit_failure: Literal["open", "closed"] = Field(
        "open",
        description="When the rate-limit backend (Redis) is down or slow: admit (open) or "
        "refuse with 429 (closed). Money never depends on it.",
    )
    rate_limit_timeout_s: float = Field(
        0.05, gt=0, le=5, description="Longest wait for one rate-limit check before failing over."
    )
    concurrency_lease_s: float = Field(
        60.0,
        gt=1,
        le=3600,
        description="Life of an in-flight slot; renewed while the request runs, so a crashed "
        "process frees its slots within this time.",
    )
    upstreams: list[UpstreamConfig] = Field(
        default_factory=list, description="Provider endpoints; empty means one from upstream_url."
    )
    routes: list[RouteConfig] = Field(
        default_factory=list,
        description="Model routes; empty means every priced model on every upstream.",
    )
    output_tokens_max: int = Field(
        1_000_000, gt=0, description="The largest max_tokens a request may ask for."
    )
    messages_max: int = Field(10_000, gt=0, description="The most messages one request may carry.")
    header_bytes_max: int = Field(
        64 * 1024, gt=0, description="Largest total size of request headers."
    )
    body_timeout_s: float = Field(60.0, gt=0, description="Longest time to receive a request body.")
    prices_file: Path | None = Field(
        None, description="Operator price catalog layered over the shipped one."
    )
    admin_key_env: str = Field(
        "CIYUAN_ADMIN_KEY",
        description="Environment variable holding the admin key (never the key); unset: no admin.",
    )
    admin_session_ttl_s: float = Field(
        8 * 3600.0, gt=0, le=7 * 24 * 3600, description="How long a dashboard login lasts."
    )
    # ---- budget webhooks (webhooks/) ---------------------------------------------------------
    webhook_secret_env: str = Field(
        "CIYUAN_WEBHOOK_SECRET",
        description="Environment variable holding the secret that signs budget webhooks (never "
        "the secret); unset: thresholds are recorded but no webhook is sent.",
    )
    webhook_attempts_max: int = Field(
        8, ge=1, le=50, description="Attempts per webhook delivery before it is recorded failed."
    )
    webhook_backoff_s: float = Field(
        30.0, ge=0, le=3600, description="Wait after a webhook's first failure; doubled after each."
    )
    webhook_timeout_s: float = Field(
        10.0, gt=0, le=120, description="Longest wait for a webhook receiver's answer."
    )
    webhook_interval_s: float = Field(
        5.0, gt=0, le=3600, description="How often each gateway looks for due webhooks."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("CIYUAN_CONFIG", CONFIG_FILE_DEFAULT))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and config file, with non-None ``overrides`` on top."""
    return Settings(**{name: value for name, value in overrides.items() if value is not None})  # type: ignore[arg-type]
