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

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

CONFIG_FILE_DEFAULT: Final = "ciyuan.toml"
DEMO_UPSTREAM: Final = "demo"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CIYUAN_", extra="forbid", frozen=True)

    db: str = Field("sqlite:///ciyuan.db", description="Database URL: sqlite:///path or postgresql://…")
    durability: Literal["process", "power"] = Field(
        "process",
        description="SQLite commit durability: survive a killed process, or also a power cut (fsync).",
    )
    host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    port: int = Field(8400, ge=0, le=65535, description="Port the gateway listens on.")
    upstream_url: str = Field(
        DEMO_UPSTREAM,
        description="Base URL of the OpenAI-compatible upstream (…/v1), or 'demo' for the built-in one.",
    )
    upstream_api_key_env: str = Field(
        "OPENAI_API_KEY",
        description="Environment variable that holds the upstream provider key (never the key itself).",
    )
    upstream_timeout_s: float = Field(600.0, gt=0, description="Longest wait for an upstream response.")
    upstream_connect_timeout_s: float = Field(10.0, gt=0, description="Longest wait to connect upstream.")
    reservation_timeout_s: float = Field(
        900.0, gt=0, description="A hold not settled by then is voided, so a crash cannot keep credit."
    )
    sweep_interval_s: float = Field(30.0, gt=0, description="How often overdue holds are voided.")
    output_tokens_default: int = Field(
        4096, gt=0, description="Output tokens reserved for when a request sets no max_tokens."
    )
    body_bytes_max: int = Field(8 * 1024 * 1024, gt=0, description="Largest request body accepted.")
    auth_cache_ttl_s: float = Field(
        5.0, ge=0, description="How long a process trusts a key lookup: the bound on revocation delay."
    )
    allow_unpriced_models: bool = Field(
        False, description="Serve models with no price, charging nothing (off: refused with 403)."
    )
    prices_file: Path | None = Field(None, description="Operator price catalog layered over the shipped one.")

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
