"""The ports: what the metering pipeline needs from persistence, as small typed Protocols.

Adapters in ``ciyuan.store`` implement them on SQLite and PostgreSQL; the contract tests in
``tests/contract`` run one suite over both. Every method is one transaction: it either happens
whole or not at all, and it is acknowledged only after its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ciyuan.ledger.accounts import Account, Balance
from ciyuan.ledger.audit import HistoryLine, Reconciliation
from ciyuan.ledger.chain import ChainReport
from ciyuan.ledger.checkpoints import Checkpoint
from ciyuan.ledger.transfers import Reservation, Settlement, Transfer
from ciyuan.metering.budgets import Budget, BudgetStatus
from ciyuan.pricing.money import Amount


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: str
    account_id: str
    account_name: str
    prefix: str
    hash_hex: str
    label: str | None
    created_us: int
    revoked_us: int | None
    expires_us: int | None = None
    models: tuple[str, ...] | None = None
    """Model globs (``gpt-4o*``) the key may use; None: every model."""
    apis: tuple[str, ...] | None = None
    """APIs (``chat``, ``completions``, ``embeddings``, ``responses``, ``anthropic_messages``)
    the key may use; None: every API."""
    metadata: dict[str, str] = field(default_factory=dict)
    """Tags such as ``team=search``: shown in listings and reports."""
    rpm: int | None = None
    """Requests per minute for this key; None: no per-key limit (the rate limiter enforces)."""
    tpm: int | None = None
    """Model tokens per minute for this key; None: no per-key limit."""
    concurrency_max: int | None = None
    """Requests in flight at once for this key; None: no per-key limit."""
    rotated_from_id: str | None = None
    """The key this one replaced by rotation, if any."""

    @property
    def active(self) -> bool:
        """Not revoked (an expired key is still "active" here: expiry needs a clock)."""
        return self.revoked_us is None

    def expired_at(self, now_us: int) -> bool:
        return self.expires_us is not None and now_us >= self.expires_us

    def usable_at(self, now_us: int) -> bool:
        return self.active and not self.expired_at(now_us)


@dataclass(frozen=True, slots=True)
class KeyOptions:
    """What a key may do and carries, set at creation and copied by rotation."""

    expires_us: int | None = None
    models: tuple[str, ...] | None = None
    apis: tuple[str, ...] | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    rpm: int | None = None
    tpm: int | None = None
    concurrency_max: int | None = None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One webhook to send (a budget threshold crossed), with its retry state."""

    id: str
    event: str
    url: str | None
    body: str
    """The exact JSON text sent on every attempt (fixed when the delivery was enqueued)."""
    state: str
    """``pending``, ``delivered``, ``failed`` (gave up) or ``unsent`` (no URL configured)."""
    attempts: int
    next_attempt_us: int | None
    last_status: int | None
    last_error: str | None
    budget_id: str
    period_start_us: int
    threshold_pct: int
    created_us: int
    delivered_us: int | None


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One request as metered: recorded exactly once per request id, success or failure."""

    request_id: str
    created_us: int
    account_id: str
    api_key_id: str
    api: str
    model: str
    upstream: str
    status: str
    """``ok``, ``error`` (failed before output: nothing charged) or ``partial`` (cut short)."""
    http_status: int
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    prompt_tokens_local: int = 0
    usage_source: str = "none"
    """``reported`` by the provider, ``counted`` locally (no usage came), or ``none``."""
    cost: Amount = field(default_factory=Amount.zero)
    reserved: Amount = field(default_factory=Amount.zero)
    unbilled: Amount = field(default_factory=Amount.zero)
    latency_ms: int = 0
    ttft_ms: int | None = None
    error_code: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    """The usage buckets and cost lines with their unit prices: why it cost what it cost."""


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One line of a usage report."""

    group: str
    requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    cost: Amount


GROUPS: Final = ("account", "key", "model", "provider", "upstream", "api", "day", "hour", "status")
"""What a usage report can be grouped by. ``day`` and ``hour`` are UTC; ``provider`` is the
catalog's provider of the model (else the ``provider/`` prefix of its name, else ``unknown``).
Besides these, ``tag:NAME`` groups by the value of the API key's tag ``NAME`` (its metadata),
:data:`UNTAGGED` for keys without it; rollups carry no tags, so it is answered from raw events."""

TAG_GROUP_PREFIX: Final = "tag:"
UNTAGGED: Final = "untagged"

REPORT_SOURCES: Final = ("auto", "rollup", "raw")


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One line of a usage report: the totals of the usage events in one group.

    ``group`` maps each grouping of the report to its value: ``account`` shows the account's
    name, ``key`` the API key's prefix, ``day`` ``2026-11-25``, ``hour`` ``2026-11-25T13``.
    ``errors`` counts requests whose status is not ``ok`` (``error`` or ``partial``). The
    percentiles are exact (nearest rank) over raw events, and None when the report was answered
    from the rollups, which keep sums only.
    """

    group: dict[str, str]
    requests: int
    errors: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    cost: Amount
    latency_ms_p50: int | None
    latency_ms_p99: int | None
    ttft_ms_p50: int | None


@dataclass(frozen=True, slots=True)
class PriceLine:
    """Part of a model's charges on a statement: one bucket at one unit price, or an adjustment
    (``unit_nanos`` 0: plan, batch, allowance, or ``unbilled`` cost beyond the floor)."""

    bucket: str
    unit_nanos: int
    tokens: int
    amount: Amount


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One model's charged requests in a period; its ``lines`` sum to ``charged`` exactly."""

    model: str
    requests: int
    input_tokens: int
    cached_tokens: int
    output_tokens: int
    reasoning_tokens: int
    charged: Amount
    lines: tuple[PriceLine, ...]


@dataclass(frozen=True, slots=True)
class LedgerStatement:
    """What the ledger holds for one account over ``[since_us, until_us)``, read in one snapshot.

    Balances are posted balances (pending holds excluded). ``transfers`` are the period's
    grants, refunds and expiries; charges and overage are summed in ``charged`` and itemised by
    model in ``usage``. ``chain_seq``/``chain_hash`` name the last chain entry before
    ``until_us``: the ledger state the figures come from; ``checkpoint`` is the first signed
    checkpoint at or after it, if one exists yet.
    """

    account: Account
    since_us: int
    until_us: int
    opening: Amount
    closing: Amount
    charged: Amount
    transfers: tuple[Transfer, ...]
    usage: tuple[ModelUsage, ...]
    chain_seq: int
    chain_hash: str
    checkpoint: Checkpoint | None


class AccountStore(Protocol):
    def create_account(self, name: str) -> Account: ...
    def get_account(self, name_or_id: str) -> Account: ...
    def list_accounts(self) -> Sequence[Account]: ...


class KeyStore(Protocol):
    def create_api_key(
        self,
        account_id: str,
        prefix: str,
        hash_hex: str,
        label: str | None,
        options: KeyOptions | None = None,
    ) -> ApiKeyRecord: ...
    def find_api_key(self, prefix: str) -> ApiKeyRecord | None: ...
    def get_api_key(self, prefix_or_id: str) -> ApiKeyRecord: ...
    def list_api_keys(self, account_id: str | None = None) -> Sequence[ApiKeyRecord]: ...
    def revoke_api_key(self, prefix_or_id: str) -> ApiKeyRecord: ...
    def rotate_api_key(
        self, prefix_or_id: str, prefix: str, hash_hex: str, *, overlap_s: float
    ) -> tuple[ApiKeyRecord, ApiKeyRecord]:
        """A new key with the old one's account, label, scopes, tags and limits; the old key
        expires ``overlap_s`` from now (or keeps an earlier expiry). Returns (old, new)."""
        ...


class BudgetStore(Protocol):
    """Spend caps per key or account and period; enforced inside reserve and settle."""

    def set_budget(
        self,
        *,
        account_id: str,
        api_key_id: str | None,
        period: str,
        amount: Amount,
        thresholds_pct: Sequence[int] = (),
        webhook_url: str | None = None,
    ) -> Budget:
        """Create the budget of this key (or account, when ``api_key_id`` is None) and period,
        or replace its amount, thresholds and webhook; spend so far in the period is kept."""
        ...

    def list_budgets(self, account_id: str | None = None) -> Sequence[BudgetStatus]: ...
    def remove_budget(self, budget_id: str) -> Budget: ...


class WebhookStore(Protocol):
    """The webhook outbox: deliveries enqueued by settles, claimed and updated by a worker."""

    def claim_webhook_deliveries(self, *, limit: int, lease_s: float) -> list[WebhookDelivery]:
        """Pending deliveries due now, each leased for ``lease_s`` so that another worker (in
        another gateway) does not send it at the same time."""
        ...

    def record_webhook_attempt(
        self,
        delivery_id: str,
        *,
        delivered: bool,
        status: int | None,
        error: str | None,
        next_attempt_us: int | None,
    ) -> WebhookDelivery:
        """One attempt's outcome; ``next_attempt_us`` None after a failure means give up."""
        ...

    def list_webhook_deliveries(self, *, limit: int = 100) -> list[WebhookDelivery]: ...


class LedgerStore(Protocol):
    def grant(
        self,
        account_id: str,
        amount: Amount,
        *,
        idempotency_key: str | None = None,
        expires_us: int | None = None,
    ) -> Transfer: ...
    def balance(self, account_id: str) -> Balance: ...
    def reserve(
        self,
        account_id: str,
        amount: Amount,
        *,
        request_id: str,
        timeout_s: float,
        api_key_id: str | None = None,
    ) -> Reservation:
        """Hold ``amount`` of the balance and, in the same transaction, of every budget of the
        account and of ``api_key_id``; refused with ``BudgetExceeded`` past a cap."""
        ...

    def settle(self, reservation: Reservation, cost: Amount, event: UsageEvent) -> Settlement: ...
    def void(self, reservation: Reservation, event: UsageEvent | None) -> None: ...
    def mark_progress(
        self, reservation: Reservation, cost: Amount, event: UsageEvent, *, alive_s: float
    ) -> bool:
        """Record what a stream has delivered so far, for the sweeper to bill if the gateway
        dies before it settles (no newer mark within ``alive_s``, and the hold overdue); False
        once the hold is no longer pending."""
        ...

    def expire_reservations(self) -> int: ...
    def transfers(self, account_id: str | None = None, limit: int = 100) -> Sequence[Transfer]: ...


class LedgerAdminStore(Protocol):
    """What operators and customers read or correct: refunds, history, audit, proofs."""

    def refund(
        self, request_id: str, amount: Amount | None = None, *, idempotency_key: str | None = None
    ) -> Transfer: ...
    def set_floor(self, account_id: str, floor: Amount) -> Account: ...
    def expire_grants(self, account_id: str | None = None) -> int: ...
    def history(
        self, account_id: str, *, limit: int = 100, before_seq: int | None = None
    ) -> Sequence[HistoryLine]: ...
    def reconcile(self) -> Reconciliation: ...
    def chain_head(self) -> tuple[int, str]: ...
    def verify_chain(
        self, *, public_key: Ed25519PublicKey | None = None, from_checkpoint: bool = False
    ) -> ChainReport: ...
    def checkpoint(self, key: Ed25519PrivateKey) -> tuple[ChainReport, Checkpoint | None]: ...
    def latest_checkpoint(self) -> Checkpoint | None: ...
    def receipt(self, request_id: str, *, account_id: str | None = None) -> dict[str, Any]: ...


class UsageStore(Protocol):
    def record_usage(self, event: UsageEvent) -> None: ...
    def usage_by_model(self, account_id: str | None = None) -> Sequence[UsageRow]: ...
    def usage_event(self, request_id: str) -> UsageEvent | None: ...


class ReportStore(Protocol):
    """Usage reports for operators, the dashboard and invoices; read-only."""

    def usage_report(
        self,
        *,
        group_by: Sequence[str],
        since_us: int | None = None,
        until_us: int | None = None,
        account_id: str | None = None,
        api_key_id: str | None = None,
        source: str = "auto",
    ) -> list[ReportRow]:
        """Totals of the usage events with ``since_us <= created_us < until_us``, by group.

        ``group_by`` is a sequence of names from :data:`GROUPS` or ``tag:NAME`` (empty: one
        grand-total row, or none when nothing matched). ``source`` is ``auto`` (the rollups,
        plus raw events for any part-hour at either end), ``rollup`` (the same, never raw
        percentiles) or ``raw`` (usage events only, with percentiles). Every source gives the
        same sums exactly. Rows are sorted by their group values in ``group_by`` order. Rollups
        carry no key tags: a ``tag:NAME`` grouping reads raw events (``auto``: no percentiles)
        and refuses ``rollup``.
        """
        ...

    def recent_usage(self, *, account_id: str | None = None, limit: int = 50) -> list[UsageEvent]:
        """The newest usage events first (at most ``limit``)."""
        ...

    def usage_page(
        self,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        account_id: str | None = None,
        after: tuple[int, str] | None = None,
        limit: int = 500,
    ) -> list[UsageEvent]:
        """Usage events oldest first, for exports: the next page after ``after``
        (``(created_us, request_id)`` of the last event of the previous page)."""
        ...


class StatementStore(Protocol):
    def statement(self, account_id: str, *, since_us: int, until_us: int) -> LedgerStatement:
        """The account's ledger over ``[since_us, until_us)``: what an invoice is built from."""
        ...


class Store(
    AccountStore,
    KeyStore,
    LedgerStore,
    LedgerAdminStore,
    UsageStore,
    ReportStore,
    StatementStore,
    BudgetStore,
    WebhookStore,
    Protocol,
):
    """Everything the gateway persists, behind one handle per process."""

    @property
    def url(self) -> str: ...
    def close(self) -> None: ...
