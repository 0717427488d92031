"""The one metering pipeline every API shares.

    authenticate → price → count the prompt locally → reserve the worst case → (the gateway
    forwards) → read usage → settle the real cost, or void and record the failure

Every step is synchronous and does its own I/O through the ports; the gateway runs the
store-touching steps off its event loop. No step knows a wire format: the gateway turns bodies
into a prompt count, a max-output figure and a :class:`Usage`, and the pipeline does the money.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ciyuan import apikeys
from ciyuan.clock import Clock, new_id
from ciyuan.errors import AuthenticationFailed, PermissionDenied
from ciyuan.ledger.transfers import Reservation, Settlement
from ciyuan.metering.ports import ApiKeyRecord, Store, UsageEvent
from ciyuan.pricing.catalog import Catalog, ModelPrice
from ciyuan.pricing.cost import Cost, cost_of, worst_case_cost
from ciyuan.pricing.money import Amount
from ciyuan.pricing.usage import Usage

AUTH_CACHE_ENTRIES_MAX: Final = 100_000
INPUT_TOKENS_BEYOND_COUNT_MAX: Final = 2_000_000
"""How far reported input may exceed the local prompt count and still be believed. Providers
legitimately add input the request does not show (a stored conversation, search results, a
tool loop), but not more than this: twice the largest context window on sale today."""


@dataclass(frozen=True, slots=True)
class MeteringPolicy:
    reservation_timeout_s: float
    output_tokens_default: int
    auth_cache_ttl_s: float
    allow_unpriced_models: bool


@dataclass(slots=True)
class Ticket:
    """A request admitted and holding credit: what settling it needs to know."""

    request_id: str
    api_key: ApiKeyRecord
    api: str
    model: str
    upstream: str
    price: ModelPrice | None
    reservation: Reservation
    prompt_tokens_local: int
    started_ns: int = field(default_factory=time.perf_counter_ns)
    first_byte_ns: int | None = None
    output_tokens_bound: int | None = None
    """The most output tokens the provider may report: the request's own limit (times its
    choices), or the gateway's largest allowed limit when it set none. None: unchecked."""
    usage_rejected: dict[str, Any] | None = None
    """Why the provider's usage was not believed, when it was not: kept on the usage event."""

    def mark_first_byte(self) -> None:
        if self.first_byte_ns is None:
            self.first_byte_ns = time.perf_counter_ns()

    def implausible(self, reported: Usage) -> str | None:
        """Why ``reported`` usage cannot be true of this request, or None when it can.

        The sanity bound of the charge policy (docs/faults.md): a provider cannot emit more
        output than the request's limit allowed, nor read more input than the prompt plus
        :data:`INPUT_TOKENS_BEYOND_COUNT_MAX`. Beyond either, a provider's bug would bill the
        customer's whole balance through the overage path, so the gateway bills its own count.
        """
        bound = self.output_tokens_bound
        if bound is not None and reported.output_total > bound:
            return f"{reported.output_total} output tokens reported; the limit was {bound}"
        input_bound = self.prompt_tokens_local + INPUT_TOKENS_BEYOND_COUNT_MAX
        if reported.input_total > input_bound:
            return (
                f"{reported.input_total} input tokens reported for a prompt counted at "
                f"{self.prompt_tokens_local}"
            )
        return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a settled request cost and left: the figures the response headers carry."""

    request_id: str
    cost: Amount
    balance: Amount
    unbilled: Amount


class _AuthCache:
    """Per-process cache of key lookups; its TTL bounds how long a revoked key keeps working."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl_ns = int(ttl_s * 1e9)
        self._entries: dict[str, tuple[int, ApiKeyRecord | None]] = {}
        self._lock = threading.Lock()

    def get(self, prefix: str) -> tuple[bool, ApiKeyRecord | None]:
        entry = self._entries.get(prefix)
        if entry is None or time.monotonic_ns() - entry[0] > self._ttl_ns:
            return False, None
        return True, entry[1]

    def forget(self, prefix: str | None) -> None:
        """Drop one key, or every key: a revocation announced by another process."""
        with self._lock:
            if prefix is None:
                self._entries.clear()
            else:
                self._entries.pop(prefix, None)

    def put(self, prefix: str, record: ApiKeyRecord | None) -> None:
        with self._lock:
            if len(self._entries) >= AUTH_CACHE_ENTRIES_MAX:
                self._entries.clear()
            self._entries[prefix] = (time.monotonic_ns(), record)


class Metering:
    def __init__(
        self, store: Store, catalog: Catalog, policy: MeteringPolicy, clock: Clock
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.policy = policy
        self.clock = clock
        self._auth_cache = _AuthCache(policy.auth_cache_ttl_s)

    # ---- authenticate ---------------------------------------------------------------------

    def authenticate_cached(self, raw_key: str | None) -> tuple[bool, ApiKeyRecord | None]:
        """(hit, record) from the process cache alone: the gateway's fast path, no I/O."""
        parts = apikeys.split(raw_key) if raw_key else None
        if parts is None:
            raise AuthenticationFailed("missing or malformed API key")
        hit, record = self._auth_cache.get(parts[0])
        if hit:
            return True, _check_key(record, parts[1], self.clock.now_us())
        return False, None

    def authenticate(self, raw_key: str | None) -> ApiKeyRecord:
        parts = apikeys.split(raw_key) if raw_key else None
        if parts is None:
            raise AuthenticationFailed("missing or malformed API key")
        prefix, presented_hash = parts
        hit, record = self._auth_cache.get(prefix)
        if not hit:
            record = self.store.find_api_key(prefix)
            self._auth_cache.put(prefix, record)
        return _check_key(record, presented_hash, self.clock.now_us())

    # ---- scope ----------------------------------------------------------------------------

    def check_scope(self, api_key: ApiKeyRecord, api: str, model: str) -> None:
        """Refuse (403) an API or a model outside the key's scope; the message names the scope.

        The gateway calls this before counting the prompt, and :meth:`admit` again as a safety
        net, so no path can reserve credit for a request the key may not make.
        """
        if api_key.apis is not None and api not in api_key.apis:
            raise PermissionDenied(
                f"this API key may not use the {api} API; its scope allows: "
                f"{', '.join(api_key.apis) or 'no API'}"
            )
        if not _model_allowed(api_key, model):
            assert api_key.models is not None
            raise PermissionDenied(
                f"this API key may not use model {model!r}; its scope allows models matching: "
                f"{', '.join(api_key.models) or 'none'}"
            )

    def allowed_models(self, api_key: ApiKeyRecord, names: Sequence[str]) -> list[str]:
        """The names in ``names`` that the key's model scope allows, in their order."""
        return [name for name in names if _model_allowed(api_key, name)]

    def forget_api_key(self, prefix: str | None) -> None:
        """Forget a cached key lookup (None: all of them), so a revocation takes effect now."""
        self._auth_cache.forget(prefix)

    # ---- admit ----------------------------------------------------------------------------

    def price_of(self, model: str) -> ModelPrice | None:
        price = self.catalog.price_for(model)
        if price is None and not self.policy.allow_unpriced_models:
            raise PermissionDenied(
                f"model {model!r} has no price in the catalog, so it cannot be billed; "
                "an operator can add one with `ciyuan prices set`"
            )
        return price

    def admit(
        self,
        api_key: ApiKeyRecord,
        *,
        api: str,
        model: str,
        upstream: str,
        prompt_tokens: int,
        output_tokens_max: int | None,
        price: ModelPrice | None,
        cache_writes: bool = False,
        output_tokens_bound: int | None = None,
    ) -> Ticket:
        """Reserve the worst-case cost of a request: all prompt tokens plus every output token."""
        assert prompt_tokens >= 0
        self.check_scope(api_key, api, model)
        output_tokens = (
            self.policy.output_tokens_default if output_tokens_max is None else output_tokens_max
        )
        worst = (
            worst_case_cost(price, prompt_tokens, output_tokens, cache_writes=cache_writes)
            if price
            else Amount.zero()
        )
        request_id = new_id("req", self.clock)
        reservation = self.store.reserve(
            api_key.account_id,
            worst,
            request_id=request_id,
            timeout_s=self.policy.reservation_timeout_s,
            api_key_id=api_key.id,
        )
        return Ticket(
            request_id=request_id,
            api_key=api_key,
            api=api,
            model=model,
            upstream=upstream,
            price=price,
            reservation=reservation,
            prompt_tokens_local=prompt_tokens,
            output_tokens_bound=output_tokens_bound,
        )

    # ---- settle or void -------------------------------------------------------------------

    def settle(
        self,
        ticket: Ticket,
        usage: Usage,
        *,
        usage_source: str,
        status: str = "ok",
        http_status: int = 200,
    ) -> Outcome:
        cost, event = self._priced(ticket, usage, usage_source, status, http_status)
        settlement: Settlement = self.store.settle(ticket.reservation, cost, event)
        return Outcome(
            ticket.request_id, settlement.charged, settlement.available_after, settlement.unbilled
        )

    def mark_progress(self, ticket: Ticket, usage: Usage, *, alive_s: float) -> bool:
        """Record what a stream has delivered so far (counted locally) on its hold: the charge
        and usage event the sweeper settles if this process dies before the stream does."""
        cost, event = self._priced(ticket, usage, "counted", "partial", 200)
        return self.store.mark_progress(ticket.reservation, cost, event, alive_s=alive_s)

    def void(self, ticket: Ticket, *, error_code: str, http_status: int) -> None:
        """Release the hold of a request that failed before any output: it charges nothing."""
        event = self._event(ticket, None, "none", "error", http_status, None, error_code)
        self.store.void(ticket.reservation, event)

    def _priced(
        self, ticket: Ticket, usage: Usage, usage_source: str, status: str, http_status: int
    ) -> tuple[Amount, UsageEvent]:
        """What ``usage`` costs, and the usage event that bills it."""
        cost: Cost | None = cost_of(usage, ticket.price) if ticket.price else None
        event = self._event(ticket, usage, usage_source, status, http_status, cost, None)
        return (cost.total if cost else Amount.zero()), event

    def _event(
        self,
        ticket: Ticket,
        usage: Usage | None,
        usage_source: str,
        status: str,
        http_status: int,
        cost: Cost | None,
        error_code: str | None,
    ) -> UsageEvent:
        now_ns = time.perf_counter_ns()
        detail: dict[str, Any] = {}
        if usage is not None:
            detail["usage"] = usage.as_dict()
        if cost is not None:
            detail["cost"] = cost.to_dict()
        if ticket.price is not None:
            detail["price"] = {"model": ticket.price.model, "source": ticket.price.source}
        if ticket.usage_rejected is not None and usage is not None:
            detail["usage_rejected"] = ticket.usage_rejected
        return UsageEvent(
            request_id=ticket.request_id,
            created_us=self.clock.now_us(),
            account_id=ticket.api_key.account_id,
            api_key_id=ticket.api_key.id,
            api=ticket.api,
            model=ticket.model,
            upstream=ticket.upstream,
            status=status,
            http_status=http_status,
            input_tokens=usage.input_total if usage else 0,
            cached_tokens=usage.cache_read_tokens if usage else 0,
            output_tokens=usage.output_total if usage else 0,
            reasoning_tokens=usage.reasoning_tokens if usage else 0,
            prompt_tokens_local=ticket.prompt_tokens_local,
            usage_source=usage_source,
            cost=cost.total if cost else Amount.zero(),
            reserved=ticket.reservation.amount,
            latency_ms=(now_ns - ticket.started_ns) // 1_000_000,
            ttft_ms=(ticket.first_byte_ns - ticket.started_ns) // 1_000_000
            if ticket.first_byte_ns
            else None,
            error_code=error_code,
            detail=detail,
        )

    def sweep(self) -> int:
        return self.store.expire_reservations()


def _model_allowed(api_key: ApiKeyRecord, model: str) -> bool:
    if api_key.models is None:
        return True
    return any(model == glob or fnmatch.fnmatchcase(model, glob) for glob in api_key.models)


def _check_key(record: ApiKeyRecord | None, presented_hash: str, now_us: int) -> ApiKeyRecord:
    # Compare even when there is no record, so timing does not tell a known prefix apart.
    stored = record.hash_hex if record is not None else "0" * 64
    if not apikeys.matches(stored, presented_hash) or record is None:
        raise AuthenticationFailed("invalid API key")
    if not record.active:
        raise AuthenticationFailed("this API key has been revoked")
    if record.expired_at(now_us):
        # The cached record carries its expiry, so expiry needs no cache invalidation.
        raise AuthenticationFailed("this API key has expired")
    return record
