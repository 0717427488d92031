"""Settings → concrete adapters: the only module that sees every side of the system."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Final

import aiohttp
from starlette.applications import Starlette

from ciyuan.admin.auth import admin_config
from ciyuan.apikeys import Secret
from ciyuan.clock import Clock, SystemClock
from ciyuan.gateway.admission import Admission, ModelLimit, RatePolicy
from ciyuan.gateway.app import create_app
from ciyuan.gateway.group_commit import CommitBatcher
from ciyuan.gateway.limits import RequestLimits
from ciyuan.gateway.routing import Deployment, Route, Router
from ciyuan.gateway.runtime import Runtime
from ciyuan.gateway.upstream.base import Upstream
from ciyuan.gateway.upstream.client import UpstreamClient
from ciyuan.keycache import RevocationListener
from ciyuan.limits import FailSafeLimiter, FailurePolicy, MemoryLimiter, RateLimiter
from ciyuan.metering.pipeline import Metering, MeteringPolicy
from ciyuan.metering.ports import Store
from ciyuan.pricing.catalog import Catalog
from ciyuan.settings import DEMO_UPSTREAM, Settings, UpstreamConfig, load_settings
from ciyuan.store import open_store
from ciyuan.store.sqlite import SqliteStore, WalCheckpointer
from ciyuan.tokens import encoding_name_for
from ciyuan.tokens.encodings import EncodingUnavailable, get_encoding
from ciyuan.webhooks import DeliveryPolicy, WebhookWorker

POSTGRES_STORE_THREADS: Final = 16
log = logging.getLogger("ciyuan.bootstrap")


class ConfigError(ValueError):
    """The routes or upstreams in the configuration do not fit together."""


def build_store(settings: Settings, clock: Clock | None = None) -> Store:
    return open_store(settings.db, clock=clock, durability=settings.durability)


def rate_policy(settings: Settings) -> RatePolicy:
    return RatePolicy(
        key_rpm=settings.rate_rpm_default,
        key_tpm=settings.rate_tpm_default,
        key_input_tpm=settings.rate_input_tpm_default,
        key_output_tpm=settings.rate_output_tpm_default,
        key_concurrency_max=settings.concurrency_max_default,
        account_rpm=settings.account_rpm,
        account_tpm=settings.account_tpm,
        account_concurrency_max=settings.account_concurrency_max,
        model_limits=tuple(
            ModelLimit(limit.model, limit.rpm, limit.tpm, limit.concurrency)
            for limit in settings.model_limits
        ),
        lease_s=settings.concurrency_lease_s,
    )


def build_limiter(settings: Settings, clock: Clock | None = None) -> RateLimiter:
    """Memory in one process; Redis, behind the failure policy, when processes share limits.

    Memory needs no fail-safe wrapper: it cannot be down. Redis is imported only when used,
    so the embedded default never loads its client.
    """
    if settings.redis is None:
        return MemoryLimiter(clock)
    from ciyuan.limits.redis import RedisLimiter

    return FailSafeLimiter(
        RedisLimiter.from_url(settings.redis),
        FailurePolicy(settings.rate_limit_failure),
        timeout_s=settings.rate_limit_timeout_s,
    )


def build_catalog(settings: Settings) -> Catalog:
    return Catalog.load(operator_file=settings.prices_file)


def _upstream(config: UpstreamConfig, demo_url: str | None) -> Upstream:
    base_url = config.base_url
    if config.kind == "demo" and base_url == DEMO_UPSTREAM:
        if demo_url is None:
            raise ConfigError(
                f"upstream {config.name!r} uses the built-in demo, which is not running"
            )
        base_url = demo_url
    key = os.environ.get(config.api_key_env) if config.api_key_env else None
    if config.api_key_env and not key:
        log.warning(
            "upstream %s: environment variable %s is not set", config.name, config.api_key_env
        )
    return Upstream(
        name=config.name,
        kind=config.kind,
        base_url=base_url,
        api_key=Secret(key) if key else None,
        timeout_s=config.timeout_s,
        connect_timeout_s=config.connect_timeout_s,
        extra_headers=dict(config.headers),
    )


def upstream_configs(settings: Settings) -> list[UpstreamConfig]:
    if settings.upstreams:
        return list(settings.upstreams)
    if settings.upstream_url == DEMO_UPSTREAM:
        return [UpstreamConfig(name="demo", kind="demo", base_url=DEMO_UPSTREAM)]
    return [
        UpstreamConfig(
            name="upstream",
            kind="openai",
            base_url=settings.upstream_url,
            api_key_env=settings.upstream_api_key_env,
            timeout_s=settings.upstream_timeout_s,
            connect_timeout_s=settings.upstream_connect_timeout_s,
        )
    ]


def uses_demo(settings: Settings) -> bool:
    return any(c.kind == "demo" and c.base_url == DEMO_UPSTREAM for c in upstream_configs(settings))


def build_router(settings: Settings, catalog: Catalog, demo_url: str | None) -> Router:
    upstreams = {c.name: _upstream(c, demo_url) for c in upstream_configs(settings)}
    if settings.routes:
        routes = []
        for route in settings.routes:
            deployments = []
            for d in route.deployments:
                if d.upstream not in upstreams:
                    raise ConfigError(
                        f"route {route.model!r} names unknown upstream {d.upstream!r}"
                    )
                deployments.append(Deployment(upstreams[d.upstream], d.model, d.weight))
            routes.append(Route(route.model, tuple(deployments)))
    else:
        routes = [Route("*", tuple(Deployment(u, None, 1) for u in upstreams.values()))]
    return Router(
        routes,
        catalog,
        explicit=bool(settings.routes),
        allow_unpriced_models=settings.allow_unpriced_models,
    )


def warm_tokenizers(catalog: Catalog) -> None:
    """Load every tokenizer the priced models use now: the first request must not pay the
    half second it takes to build one."""
    names = {encoding_name_for(model) for model in catalog.models()}
    for name in sorted(n for n in names if n is not None):
        try:
            get_encoding(name)
        except EncodingUnavailable as error:
            log.warning("tokenizer %s is not available: %s", name, error)


def build_app(
    settings: Settings, *, demo_url: str | None = None, clock: Clock | None = None
) -> Starlette:
    clock = clock or SystemClock()
    store = build_store(settings, clock)
    catalog = build_catalog(settings)
    warm_tokenizers(catalog)
    metering = Metering(
        store,
        catalog,
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
        router=build_router(settings, catalog, demo_url),
        client=UpstreamClient(),
        store_executor=ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ciyuan-store"),
        log_requests=settings.log_requests,
        log_prompts=settings.log_prompts,
        stream_progress_interval_s=settings.stream_progress_interval_s,
        tracing=settings.tracing,
        # SQLite inline, with group commit: one COMMIT (one fsync at durability=power) per
        # event-loop turn, shared by every request that wrote in it.
        store_inline=settings.store_inline and isinstance(store, SqliteStore),
        batcher=CommitBatcher(store) if isinstance(store, SqliteStore) else None,
        limits=RequestLimits(
            body_bytes_max=settings.body_bytes_max,
            body_timeout_s=settings.body_timeout_s,
            header_bytes_max=settings.header_bytes_max,
            output_tokens_max=settings.output_tokens_max,
            messages_max=settings.messages_max,
        ),
        sweep_interval_s=settings.sweep_interval_s,
        admission=Admission(build_limiter(settings, clock), rate_policy(settings)),
    )
    runtime.admission.register_metrics(runtime.metrics.registry)
    if isinstance(store, SqliteStore):
        sqlite_store = store
        runtime.metrics.watch_commits(lambda: (sqlite_store.commits, sqlite_store.writes_committed))
        if store.durability == "process":
            # At "power" every COMMIT fsyncs anyway, and a WAL that a background checkpoint
            # cannot rewind grows, which made each of those fsyncs dearer (bench/ledger: 18%
            # fewer pairs/s for one client); SQLite's own checkpoint stays on there.
            checkpointer = WalCheckpointer(store)
            runtime.housekeeping.append((checkpointer.start, checkpointer.stop))
    if settings.redis is not None:
        runtime.revocations = RevocationListener(settings.redis, runtime.forget_api_key)
    webhook_secret = os.environ.get(settings.webhook_secret_env)
    if webhook_secret:
        policy = DeliveryPolicy(
            attempts_max=settings.webhook_attempts_max,
            backoff_base_s=settings.webhook_backoff_s,
            timeout_s=settings.webhook_timeout_s,
            interval_s=settings.webhook_interval_s,
        )

        def webhook_worker(session: aiohttp.ClientSession) -> WebhookWorker:
            return WebhookWorker(
                store, session, Secret(webhook_secret), clock, policy, in_store=runtime.in_store
            )

        runtime.webhook_worker = webhook_worker
    else:
        log.info("budget alert webhooks are off: %s is not set", settings.webhook_secret_env)

    def reload() -> None:
        """Re-read config and prices; swap them in whole, or keep the old ones on any error."""
        fresh = load_settings(db=settings.db, host=settings.host, port=settings.port)
        new_catalog = build_catalog(fresh)
        new_router = build_router(fresh, new_catalog, demo_url)
        runtime.router = new_router
        runtime.metering.catalog = new_catalog
        log.warning("configuration reloaded: %d models routed", len(new_router.models("openai")))

    runtime.reload = reload
    return create_app(runtime, admin_config(settings))
