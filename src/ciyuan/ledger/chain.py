"""The hash chain over transfers: tamper evidence (pure domain: no I/O).

Each transfer has a *leaf* hash over a canonical encoding of all its fields, its position
(``seq``) included, and a *link* hash that binds the leaf to the link before it::

    leaf(n) = SHA-256(0x00 ‖ canonical_json(transfer n))
    link(n) = SHA-256(0x01 ‖ link(n−1) ‖ leaf(n)),  link(0) = 32 zero bytes

The stored ``hash`` of a transfer is its link. Altering a field changes its leaf, removing or
reordering entries breaks the link of the next one or the positions, and removing the newest
entries leaves the chain short of the head row. Splitting leaf from link lets a receipt prove
one customer's transfer with only hashes of the others, never their contents: the leaf is
exactly RFC 6962's leaf hash of the canonical encoding, so the same leaves feed the Merkle tree
that checkpoints sign (``merkle.py``) and receipts prove inclusion in. The domain separators
(0x00, 0x01) keep a leaf from ever being mistaken for a link or a Merkle node.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from ciyuan.ledger.transfers import Transfer

ENCODING_VERSION: Final = "ciyuan.transfer.v1"
GENESIS_HASH: Final = "0" * 64


def canonical_bytes(transfer: Transfer) -> bytes:
    """The one encoding that is hashed: a JSON array in fixed field order, compact, UTF-8."""
    assert transfer.seq >= 1, "a transfer gets its chain position before it is hashed"
    fields = [
        ENCODING_VERSION, transfer.seq, transfer.id, transfer.debit_account_id,
        transfer.credit_account_id, transfer.amount.nanos, transfer.kind.value, transfer.reference,
        transfer.idempotency_key, transfer.created_us, transfer.metadata,
    ]  # fmt: skip
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode()


def leaf_hash(transfer: Transfer) -> str:
    return hashlib.sha256(b"\x00" + canonical_bytes(transfer)).hexdigest()


def link_hash(previous_hex: str, leaf_hex: str) -> str:
    assert len(previous_hex) == 64 and len(leaf_hex) == 64
    return hashlib.sha256(
        b"\x01" + bytes.fromhex(previous_hex) + bytes.fromhex(leaf_hex)
    ).hexdigest()


def chain_hash(previous_hex: str, transfer: Transfer) -> str:
    return link_hash(previous_hex, leaf_hash(transfer))


@dataclass(frozen=True, slots=True)
class ChainProblem:
    seq: int
    """The first chain position found wrong."""
    kind: str
    """``altered`` (a hash does not match), ``removed`` (a position is missing), ``reordered``
    (positions out of order or repeated) or ``truncated`` (the chain ends before its head)."""
    detail: str


@dataclass(frozen=True, slots=True)
class ChainReport:
    entries_checked: int
    head_seq: int
    head_hash: str
    problem: ChainProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def to_dict(self) -> dict[str, Any]:
        """The report as the CLI, the admin API and JSON files show it."""
        problem = self.problem
        return {
            "ok": self.ok,
            "entries_checked": self.entries_checked,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "problem": None
            if problem is None
            else {"seq": problem.seq, "kind": problem.kind, "detail": problem.detail},
        }


class ChainWalker:
    """Checks a chain fed in position order, one transfer at a time, from a trusted start."""

    def __init__(self, start_seq: int = 0, start_hash: str = GENESIS_HASH) -> None:
        self.seq = start_seq
        self.hash = start_hash
        self.checked = 0
        self.problem: ChainProblem | None = None

    def feed(self, transfer: Transfer) -> bool:
        """Check the next transfer; False (and ``problem`` set) at the first fault found."""
        if self.problem is not None:
            return False
        expected = self.seq + 1
        if transfer.seq <= self.seq:
            return self._fail(
                transfer.seq, "reordered", f"position {transfer.seq} after {self.seq}"
            )
        if transfer.seq != expected:
            return self._fail(
                expected, "removed", f"positions {expected}..{transfer.seq - 1} are missing"
            )
        recomputed = chain_hash(self.hash, transfer)
        if recomputed != transfer.hash:
            return self._fail(
                transfer.seq, "altered",
                f"transfer {transfer.id} does not match its hash (altered, or moved from "
                f"elsewhere)",
            )  # fmt: skip
        self.seq, self.hash = transfer.seq, recomputed
        self.checked += 1
        return True

    def finish(self, head_seq: int, head_hash: str) -> ChainReport:
        """Compare where the walk ended with the recorded head: catches removed newest entries."""
        if self.problem is None and (self.seq, self.hash) != (head_seq, head_hash):
            if self.seq < head_seq:
                self._fail(
                    self.seq + 1,
                    "truncated",
                    f"the chain ends at {self.seq}, its head is at {head_seq}",
                )
            else:
                self._fail(self.seq, "altered", "the chain does not end at the recorded head")
        return ChainReport(self.checked, head_seq, head_hash, self.problem)

    def _fail(self, seq: int, kind: str, detail: str) -> bool:
        self.problem = ChainProblem(seq, kind, detail)
        return False


def walk(transfers: Iterable[Transfer], head_seq: int, head_hash: str) -> ChainReport:
    walker = ChainWalker()
    for transfer in transfers:
        if not walker.feed(transfer):
            break
    return walker.finish(head_seq, head_hash)
