"""The ports: what the metering pipeline needs from persistence, as small typed Protocols.

Adapters in ``ciyuan.store`` implement them on SQLite and PostgreSQL; the contract tests in
``tests/contract`` run one suite over both. Every method is one transaction: it either happens
whole or not at all, and it is acknowledged only after its commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ciyuan.ledger.accounts import Account, Balance
from ciyuan.ledger.audit import HistoryLine, Reconciliation
from ciyuan.ledger.chain import ChainReport
from ciyuan.ledger.checkpoints import Checkpoint
from ciyuan.ledger.transfers import Reservation, Settlement, Transfer
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

    @property
    def active(self) -> bool:
        return self.revoked_us is None


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


class AccountStore(Protocol):
    def create_account(self, name: str) -> Account: ...
    def get_account(self, name_or_id: str) -> Account: ...
    def list_accounts(self) -> Sequence[Account]: ...


class KeyStore(Protocol):
    def create_api_key(
        self, account_id: str, prefix: str, hash_hex: str, label: str | None
    ) -> ApiKeyRecord: ...
    def find_api_key(self, prefix: str) -> ApiKeyRecord | None: ...
    def list_api_keys(self, account_id: str | None = None) -> Sequence[ApiKeyRecord]: ...
    def revoke_api_key(self, prefix_or_id: str) -> ApiKeyRecord: ...


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
        self, account_id: str, amount: Amount, *, request_id: str, timeout_s: float
    ) -> Reservation: ...
    def settle(self, reservation: Reservation, cost: Amount, event: UsageEvent) -> Settlement: ...
    def void(self, reservation: Reservation, event: UsageEvent | None) -> None: ...
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


class Store(AccountStore, KeyStore, LedgerStore, LedgerAdminStore, UsageStore, Protocol):
    """Everything the gateway persists, behind one handle per process."""

    @property
    def url(self) -> str: ...
    def close(self) -> None: ...
