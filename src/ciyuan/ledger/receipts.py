"""Receipts a customer can check offline (pure domain: no I/O).

A receipt holds the transfers of one request (its charge, overage, refunds) with their chain
positions and hashes, a signed checkpoint at or after them, and the chain *segment* that links
them: the link hash just before the first transfer and the leaf hash of every position up to
the checkpoint. Other customers' transfers appear only as leaf hashes, which reveal nothing.

This is a plain chain segment, not yet a Merkle inclusion proof: its size grows with the
number of transfers between the request and the checkpoint (the store picks the earliest
checkpoint that covers the request to keep it short). A Merkle tree over the log, as
Certificate Transparency does it, is the planned successor with logarithmic proofs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ciyuan.ledger.chain import leaf_hash, link_hash
from ciyuan.ledger.checkpoints import Checkpoint, public_key_hex, signature_valid
from ciyuan.ledger.transfers import Transfer, TransferKind
from ciyuan.pricing.money import Amount

RECEIPT_VERSION: Final = "ciyuan.receipt.v1"
PROOF_KIND: Final = "chain-segment"


def transfer_to_dict(transfer: Transfer) -> dict[str, Any]:
    return {
        "seq": transfer.seq, "id": transfer.id, "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id, "amount_nanos": transfer.amount.nanos,
        "amount": str(transfer.amount), "kind": transfer.kind.value,
        "reference": transfer.reference, "idempotency_key": transfer.idempotency_key,
        "created_us": transfer.created_us, "metadata": transfer.metadata, "hash": transfer.hash,
    }  # fmt: skip


def transfer_from_dict(data: dict[str, Any]) -> Transfer:
    return Transfer(
        id=str(data["id"]), debit_account_id=str(data["debit_account_id"]),
        credit_account_id=str(data["credit_account_id"]), amount=Amount(int(data["amount_nanos"])),
        kind=TransferKind(data["kind"]), reference=data["reference"],
        idempotency_key=data["idempotency_key"], created_us=int(data["created_us"]),
        metadata=data["metadata"], seq=int(data["seq"]), hash=str(data["hash"]),
    )  # fmt: skip


def build_receipt(
    request_id: str,
    transfers: Sequence[Transfer],
    previous_hash: str,
    leaves: Sequence[str],
    checkpoint: Checkpoint | None,
) -> dict[str, Any]:
    """The receipt document; ``leaves`` run from the first transfer to the checkpoint."""
    assert transfers and list(transfers) == sorted(transfers, key=lambda t: t.seq)
    start = transfers[0].seq
    if checkpoint is not None:
        assert len(leaves) == checkpoint.seq - start + 1
    return {
        "version": RECEIPT_VERSION,
        "request_id": request_id,
        "transfers": [transfer_to_dict(t) for t in transfers],
        "proof": PROOF_KIND,
        "segment": {"start_seq": start, "previous_hash": previous_hash, "leaves": list(leaves)},
        "checkpoint": checkpoint.to_dict() if checkpoint else None,
    }


@dataclass(frozen=True, slots=True)
class ReceiptCheck:
    ok: bool
    problem: str | None
    request_id: str | None = None
    checkpoint_seq: int | None = None
    charged: Amount | None = None
    """Charges and overages minus refunds of the request, as the verified transfers say."""


def verify_receipt(document: dict[str, Any], public_key: Ed25519PublicKey) -> ReceiptCheck:
    """Check a receipt with nothing but the operator's public key."""
    try:
        return _verify(document, public_key)
    except (KeyError, TypeError, ValueError) as exc:
        return ReceiptCheck(False, f"the receipt is malformed: {type(exc).__name__}: {exc}")


def _verify(document: dict[str, Any], public_key: Ed25519PublicKey) -> ReceiptCheck:
    if document.get("version") != RECEIPT_VERSION:
        return ReceiptCheck(False, f"unknown receipt version {document.get('version')!r}")
    request_id = str(document["request_id"])
    transfers = [transfer_from_dict(item) for item in document["transfers"]]
    if not transfers or any(t.reference != request_id for t in transfers):
        return ReceiptCheck(False, "the receipt's transfers do not all belong to its request")
    if document["checkpoint"] is None:
        return ReceiptCheck(False, "no signed checkpoint covers this receipt yet", request_id)
    checkpoint = Checkpoint.from_dict(document["checkpoint"])
    if checkpoint.public_key != public_key_hex(public_key) or not signature_valid(
        checkpoint, public_key
    ):
        return ReceiptCheck(False, "the checkpoint is not signed by this public key", request_id)
    segment = document["segment"]
    start, leaves = int(segment["start_seq"]), [str(leaf) for leaf in segment["leaves"]]
    if len(leaves) != checkpoint.seq - start + 1:
        return ReceiptCheck(False, "the segment does not reach the checkpoint", request_id)
    by_seq = {t.seq: t for t in transfers}
    running = str(segment["previous_hash"])
    for offset, leaf in enumerate(leaves):
        seq = start + offset
        own = by_seq.pop(seq, None)
        if own is not None and leaf_hash(own) != leaf:
            return ReceiptCheck(False, f"transfer {own.id} does not match its leaf", request_id)
        running = link_hash(running, leaf)
        if own is not None and own.hash != running:
            return ReceiptCheck(
                False, f"transfer {own.id} is not at its stated chain position", request_id
            )
    if by_seq:
        return ReceiptCheck(False, "a transfer lies outside the segment", request_id)
    if running != checkpoint.hash:
        return ReceiptCheck(False, "the segment does not end at the checkpoint's hash", request_id)
    charged = sum(
        (-t.amount if t.kind is TransferKind.REFUND else t.amount for t in transfers), Amount.zero()
    )
    return ReceiptCheck(True, None, request_id, checkpoint.seq, charged)
