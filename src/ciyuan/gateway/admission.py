"""Admission: rate and concurrency limits, checked before any money moves.

    admit   one ``hit_all`` for every rate rule of the key and its account (requests/minute,
            model tokens/minute, and input/output tokens/minute where configured), then one
            lease per concurrency limit; refused → ``RateRefused`` (429), nothing reserved
    finish  when the request ends, whatever the way: correct the token charges with the real
            usage (``adjust``) and give the leases back

Token rules are charged at admission with the local prompt count plus the output the request
may produce (its max tokens), because the real usage is unknown until the call ends; ``finish``
refunds the difference (or charges the excess) so a window counts what was really used.

A request refused here never touches the ledger: the relay calls ``admit`` before it reserves.
Each limit applies to two scopes: the API key (the key's own ``rpm``/``tpm``/``concurrency_max``
when it has them, else the defaults) and its account (every key of it together). Where a
``ModelLimit`` matches the requested model, its rules apply too, counted per key and model name
(scope ``key:<id>|model:<name>``): charged in the same ``hit_all``, corrected and leased alike.

Headers come in the dialect of the route: OpenAI's ``x-ratelimit-*`` or Anthropic's
``anthropic-ratelimit-*`` (``ciyuan.limits.headers``), on success and on a 429 alike.

Leases are renewed by one loop for every request in flight (not one task per request), so a
stream longer than ``lease_s`` keeps its slot; a process that dies stops renewing, and its
slots come back by themselves within ``lease_s``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Final

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ciyuan.errors import RateLimited
from ciyuan.gateway.apis import Dialect
from ciyuan.limits import (
    Charge,
    Decision,
    FailSafeLimiter,
    Lease,
    RateLimiter,
    Rule,
    anthropic_ratelimit_headers,
    openai_ratelimit_headers,
    retry_after_s,
)
from ciyuan.metering.ports import ApiKeyRecord
from ciyuan.pricing.usage import Usage

WINDOW_S: Final = 60
CONCURRENCY_RETRY_AFTER_S: Final = 1.0
"""A slot frees when some request ends, which nothing predicts: a short, honest guess."""

log = logging.getLogger("ciyuan.gateway.admission")

_UNIT_WORDS: Final = {
    "rpm": "requests per minute",
    "tpm": "model tokens per minute",
    "input-tpm": "input tokens per minute",
    "output-tpm": "output tokens per minute",
}
_HEADERS: Final[dict[Dialect, Callable[[Iterable[Decision]], dict[str, str]]]] = {
    "openai": openai_ratelimit_headers,
    "anthropic": anthropic_ratelimit_headers,
}


@dataclass(frozen=True, slots=True)
class ModelLimit:
    """Limits for one API key's calls to the models ``glob`` names, per model name."""

    glob: str
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None

    def matches(self, model: str) -> bool:
        return model == self.glob or fnmatch.fnmatchcase(model, self.glob)


@dataclass(frozen=True, slots=True)
class _Scope:
    """Whose bucket a charge or slot is: ``label`` for metrics, ``owner`` for messages."""

    key: str
    label: str
    owner: str
    model_glob: str | None = None


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """The limits in force; ``None`` is unlimited. Per-key values yield to the key's own."""

    key_rpm: int | None = None
    key_tpm: int | None = None
    key_input_tpm: int | None = None
    key_output_tpm: int | None = None
    key_concurrency_max: int | None = None
    account_rpm: int | None = None
    account_tpm: int | None = None
    account_concurrency_max: int | None = None
    model_limits: tuple[ModelLimit, ...] = ()
    lease_s: float = 60.0

    def model_limit(self, model: str) -> ModelLimit | None:
        """The first per-model limit whose glob matches ``model``."""
        return next((limit for limit in self.model_limits if limit.matches(model)), None)

    @property
    def has_rate_rules(self) -> bool:
        """Whether any rule is configured, so a deployment can tell it needs a shared backend."""
        return bool(self.model_limits) or any(
            value is not None
            for value in (
                self.key_rpm,
                self.key_tpm,
                self.key_input_tpm,
                self.key_output_tpm,
                self.key_concurrency_max,
                self.account_rpm,
                self.account_tpm,
                self.account_concurrency_max,
            )
        )


class RateRefused(RateLimited):
    """A 429 that carries the route's rate-limit headers (OpenAI's ``x-ratelimit-*`` or
    Anthropic's ``anthropic-ratelimit-*``) and ``retry-after``."""

    def __init__(
        self, message: str, *, retry_after_s: float, headers: dict[str, str], retry: bool = True
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.headers = dict(headers)
        if not retry:
            # The request can never fit (it asks for more tokens than a whole window): tell the
            # SDKs not to retry, instead of letting them wait in vain.
            self.headers["x-should-retry"] = "false"
            self.headers.pop("retry-after", None)
            self.headers.pop("retry-after-ms", None)


@dataclass(eq=False, slots=True)
class Admitted:
    """What admission charged and holds for one request, until ``finish``."""

    charges: tuple[Charge, ...] = ()
    scopes: tuple[_Scope, ...] = ()
    leases: list[Lease] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    finished: bool = False


@lru_cache(maxsize=4096)
def _rule(name: str, limit: int) -> Rule:
    # Rules are validated on construction; keys share a handful of limits, so build each once.
    return Rule(name, limit, WINDOW_S)


class Admission:
    def __init__(self, limiter: RateLimiter, policy: RatePolicy) -> None:
        assert policy.lease_s > 0
        self.limiter = limiter
        self.policy = policy
        self._policy_limits = policy.has_rate_rules
        self._live: set[Admitted] = set()
        self.refusals = Counter(
            "ciyuan_rate_limited_requests",
            "Requests refused by a rate or concurrency limit, by rule and scope.",
            ["rule", "scope"],
            registry=None,
        )

    # ---- admit ----------------------------------------------------------------------------

    def _scopes(
        self, record: ApiKeyRecord, model: str | None
    ) -> tuple[_Scope, _Scope, tuple[_Scope, ModelLimit] | None]:
        key = _Scope(f"key:{record.id}", "key", "this API key")
        account = _Scope(f"acct:{record.account_id}", "account", "this account")
        limit = None if model is None else self.policy.model_limit(model)
        if limit is None:
            return key, account, None
        # The model name, not the glob, is in the bucket's key: each matching model counts apart.
        per_model = _Scope(f"{key.key}|model:{model}", "model", "this key", limit.glob)
        return key, account, (per_model, limit)

    def _charges(
        self, record: ApiKeyRecord, model: str | None, prompt_tokens: int, output_tokens: int
    ) -> Iterator[tuple[_Scope, Charge]]:
        p = self.policy
        key, account, per_model = self._scopes(record, model)
        total = prompt_tokens + output_tokens
        rules: list[tuple[_Scope, str, int | None, int]] = [
            (key, "rpm", record.rpm or p.key_rpm, 1),
            (key, "tpm", record.tpm or p.key_tpm, total),
            (key, "input-tpm", p.key_input_tpm, prompt_tokens),
            (key, "output-tpm", p.key_output_tpm, output_tokens),
            (account, "rpm", p.account_rpm, 1),
            (account, "tpm", p.account_tpm, total),
        ]
        if per_model is not None:
            scope, limit = per_model
            rules += [(scope, "rpm", limit.rpm, 1), (scope, "tpm", limit.tpm, total)]
        for scope, name, value, cost in rules:
            if value is not None:
                yield scope, Charge(scope.key, _rule(name, value), cost)

    def _slots(self, record: ApiKeyRecord, model: str | None) -> Iterator[tuple[_Scope, int]]:
        key, account, per_model = self._scopes(record, model)
        key_max = record.concurrency_max or self.policy.key_concurrency_max
        if key_max is not None:
            yield key, key_max
        if self.policy.account_concurrency_max is not None:
            yield account, self.policy.account_concurrency_max
        if per_model is not None and per_model[1].concurrency is not None:
            yield per_model[0], per_model[1].concurrency

    async def admit(
        self,
        record: ApiKeyRecord,
        *,
        prompt_tokens: int,
        output_tokens: int,
        model: str | None = None,
        dialect: Dialect = "openai",
    ) -> Admitted:
        """Charge every rule and take every slot, or raise ``RateRefused`` having kept none.

        ``model`` selects the per-model limits (none when ``None``); ``dialect`` the headers."""
        assert prompt_tokens >= 0 and output_tokens >= 0
        if not (self._policy_limits or record.rpm or record.tpm or record.concurrency_max):
            # No rule and no slot applies (the unlimited default): nothing to charge or hold,
            # and no decision to report in headers.
            return Admitted()
        headers_of = _HEADERS[dialect]
        scoped = tuple(self._charges(record, model, prompt_tokens, output_tokens))
        scopes = tuple(scope for scope, _ in scoped)
        charges = tuple(charge for _, charge in scoped)
        decisions: tuple[Decision, ...] = ()
        if charges:
            decisions = await self.limiter.hit_all(charges)
            if not all(d.allowed for d in decisions):
                raise self._refused(scopes, charges, decisions, headers_of)
        admitted = Admitted(charges, scopes, [], headers_of(decisions))
        for scope, limit in self._slots(record, model):
            lease = await self.limiter.acquire(scope.key, limit, self.policy.lease_s)
            if lease is None:
                # Give back what this request took: the rate charges were for a request that
                # does not happen now (the refusal should not also cost a request).
                await self._give_back(admitted, None, refund_requests=True)
                self.refusals.labels("concurrency", scope.label).inc()
                if scope.model_glob is None:
                    message = (
                        f"the limit of {limit} requests in flight at once for {scope.owner} "
                        "is reached"
                    )
                else:
                    message = (
                        f"the concurrency limit of {limit} for model {scope.model_glob} on "
                        f"{scope.owner} is reached (requests in flight at once)"
                    )
                raise RateRefused(
                    message,
                    retry_after_s=CONCURRENCY_RETRY_AFTER_S,
                    headers={**admitted.headers, "retry-after": "1", "retry-after-ms": "1000"},
                )
            admitted.leases.append(lease)
        if admitted.leases:
            self._live.add(admitted)
        return admitted

    def _refused(
        self,
        scopes: Sequence[_Scope],
        charges: Sequence[Charge],
        decisions: Sequence[Decision],
        headers_of: Callable[[Iterable[Decision]], dict[str, str]],
    ) -> RateRefused:
        headers = headers_of(decisions)
        wait_s = retry_after_s(decisions)
        reasons = []
        for scope, charge, decision in zip(scopes, charges, decisions, strict=True):
            if decision.allowed:
                continue
            self.refusals.labels(charge.rule.name, scope.label).inc()
            words = _UNIT_WORDS.get(charge.rule.name, charge.rule.name)
            if scope.model_glob is None:
                rule = f"the {charge.rule.limit} {words} allowed for {scope.owner}"
                limit = f"the limit of {charge.rule.limit} {words} for {scope.owner}"
            else:
                rule = limit = (
                    f"the {charge.rule.name} limit of {charge.rule.limit} for model "
                    f"{scope.model_glob} on {scope.owner} ({words})"
                )
            if decision.retry_after_ms is None:
                reasons.append(
                    f"this request needs {charge.cost} of {rule}, so it can never be "
                    "admitted; ask for fewer tokens"
                )
            else:
                reasons.append(f"{limit} is reached")
        message = "rate limit: " + "; ".join(reasons)
        if decisions and all(d.degraded for d in decisions):
            message = "rate limits cannot be checked right now (the limiter is unavailable)"
        if wait_s is None:
            return RateRefused(message, retry_after_s=WINDOW_S, headers=headers, retry=False)
        return RateRefused(
            f"{message}; retry in {wait_s:.1f} s", retry_after_s=wait_s, headers=headers
        )

    # ---- finish ---------------------------------------------------------------------------

    async def finish(self, admitted: Admitted, usage: Usage | None) -> None:
        """Correct the token charges with ``usage`` (``None``: nothing was produced, so every
        token charged is given back) and release the slots. Runs once; later calls do nothing."""
        if admitted.finished:
            return
        admitted.finished = True
        self._live.discard(admitted)
        await self._give_back(admitted, usage, refund_requests=False)

    async def _give_back(
        self, admitted: Admitted, usage: Usage | None, *, refund_requests: bool
    ) -> None:
        steps = []
        for charge in admitted.charges:
            actual = _actual(charge.rule.name, usage)
            if actual is None:
                actual = 0 if refund_requests else charge.cost
            if actual != charge.cost:
                steps.append(self.limiter.adjust(charge.key, charge.rule, actual - charge.cost))
        steps += [self.limiter.release(lease) for lease in admitted.leases]
        if not steps:
            return
        # The backends swallow their own outages (FailSafeLimiter); anything else is a bug, but
        # it must not turn a request that was served and billed into an error.
        for result in await asyncio.gather(*steps, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("rate-limit correction failed", exc_info=result)

    # ---- leases of long requests ----------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._live)

    async def renew_forever(self) -> None:
        """Renew every live lease each third of its life, so long streams keep their slots."""
        interval_s = self.policy.lease_s / 3
        while True:
            await asyncio.sleep(interval_s)
            await self.renew_once()

    async def renew_once(self) -> None:
        for admitted in list(self._live):
            kept = []
            for lease in admitted.leases:
                renewed = await self.limiter.renew(lease, self.policy.lease_s)
                if renewed is None:
                    # Lost (e.g. Redis restarted empty): the request goes on, its slot is free.
                    log.warning("an in-flight slot expired before its request ended")
                    continue
                kept.append(renewed)
            admitted.leases = kept

    # ---- metrics and lifetime -------------------------------------------------------------

    def register_metrics(self, registry: CollectorRegistry) -> None:
        registry.register(self.refusals)
        if isinstance(self.limiter, FailSafeLimiter):
            registry.register(_DegradedCollector(self.limiter))

    async def aclose(self) -> None:
        await self.limiter.aclose()


def _actual(rule_name: str, usage: Usage | None) -> int | None:
    """The real units a token rule should have been charged; ``None`` for non-token rules."""
    if rule_name == "rpm":
        return None
    if usage is None:
        return 0
    if rule_name == "tpm":
        return usage.input_total + usage.output_total
    if rule_name == "input-tpm":
        return usage.input_total
    if rule_name == "output-tpm":
        return usage.output_total
    return None


class _DegradedCollector(Collector):
    """``ciyuan_rate_limiter_degraded_total``: calls the failure policy answered instead of the
    backend. Read from the limiter's own count at scrape time, so the limits package needs no
    metrics dependency."""

    def __init__(self, limiter: FailSafeLimiter) -> None:
        self._limiter = limiter

    def collect(self) -> Iterable[CounterMetricFamily]:
        family = CounterMetricFamily(
            "ciyuan_rate_limiter_degraded",
            "Rate-limit calls answered by the failure policy because the backend was down "
            "or slow (policy: open admits, closed refuses).",
            labels=["policy"],
        )
        family.add_metric([self._limiter.policy.value], self._limiter.degraded_count)
        yield family
