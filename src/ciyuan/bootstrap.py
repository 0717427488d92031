"""Settings → concrete adapters: the only module that sees every side of the system."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from starlette.applications import Starlette

from ciyuan.apikeys import Secret
from ciyuan.clock import Clock, SystemClock
from ciyuan.gateway.app import create_app
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.upstream.base import Upstream
from ciyuan.gateway.upstream.client import UpstreamClient
from ciyuan.metering.pipeline import Metering, MeteringPolicy
from ciyuan.metering.ports import Store
from ciyuan.pricing.catalog import Catalog
from ciyuan.settings import DEMO_UPSTREAM, Settings
from ciyuan.store import open_store

POSTGRES_STORE_THREADS = 16


def build_store(settings: Settings, clock: Clock | None = None) -> Store:
    return open_store(settings.db, clock=clock, durability=settings.durability)


def build_catalog(settings: Settings) -> Catalog:
    return Catalog.load(operator_file=settings.prices_file)


def build_upstream(settings: Settings, demo_url: str | None) -> Upstream:
    if settings.upstream_url == DEMO_UPSTREAM:
        assert demo_url is not None, "the demo upstream must be running before the gateway is built"
        return Upstream("demo", demo_url, None, settings.upstream_timeout_s, settings.upstream_connect_timeout_s)
    key = os.environ.get(settings.upstream_api_key_env)
    return Upstream(
        "openai-compatible",
        settings.upstream_url,
        Secret(key) if key else None,
        settings.upstream_timeout_s,
        settings.upstream_connect_timeout_s,
    )


def build_app(settings: Settings, *, demo_url: str | None = None, clock: Clock | None = None) -> Starlette:
    clock = clock or SystemClock()
    store = build_store(settings, clock)
    metering = Metering(
        store,
        build_catalog(settings),
        MeteringPolicy(
            reservation_timeout_s=settings.reservation_timeout_s,
            output_tokens_default=settings.output_tokens_default,
            auth_cache_ttl_s=settings.auth_cache_ttl_s,
            allow_unpriced_models=settings.allow_unpriced_models,
        ),
        clock,
    )
    # SQLite has one writer: one thread keeps its calls in order without lock contention.
    threads = 1 if settings.db.startswith("sqlite") else POSTGRES_STORE_THREADS
    runtime = Runtime(
        metering=metering,
        upstream=build_upstream(settings, demo_url),
        client=UpstreamClient(),
        store_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ciyuan-store"),
        body_bytes_max=settings.body_bytes_max,
        sweep_interval_s=settings.sweep_interval_s,
    )
    return create_app(runtime)
