"""Receipts a customer can check offline (pure domain: no I/O).

A receipt holds the transfers of one request (its charge, overage, refunds) with their chain
positions, a signed checkpoint at or after them, and a proof that links the transfers to what
the checkpoint signs. Other customers' transfers appear only as hashes, which reveal nothing.
Two versions exist; :func:`verify_receipt` accepts both:

``ciyuan.receipt.v2`` (proof ``merkle-inclusion``), issued when the checkpoint signs a Merkle
root (``checkpoints.py`` version 2): for each transfer its leaf index (``seq − 1``) and its
RFC 9162 audit path to that root, in a tree of ``checkpoint.seq`` leaves. A path has at most
⌈log2 n⌉ hashes, so the receipt stays small however long the ledger grows, and the store may
use the *latest* checkpoint. The transfers' ``hash`` (their chain link) is informational here:
the leaf hash, recomputed from the transfer's fields, is what the proof binds.

``ciyuan.receipt.v1`` (proof ``chain-segment``), for checkpoints signed before Merkle roots:
the link hash just before the first transfer and the leaf hash of every position up to the
checkpoint. Its size grows with the distance to the checkpoint, so the store picks the earliest
checkpoint that covers the request.

Neither proves that a receipt lists *all* of a request's transfers (an omitted refund is not
detected), only that each listed one is in the signed ledger, once, unaltered, at its position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ciyuan.ledger import merkle
from ciyuan.ledger.chain import leaf_hash, link_hash
from ciyuan.ledger.checkpoints import Checkpoint, public_key_hex, signature_valid
from ciyuan.ledger.transfers import Transfer, TransferKind
from ciyuan.pricing.money import Amount

RECEIPT_VERSION: Final = "ciyuan.receipt.v2"
PROOF_KIND: Final = "merkle-inclusion"
SEGMENT_RECEIPT_VERSION: Final = "ciyuan.receipt.v1"
SEGMENT_PROOF_KIND: Final = "chain-segment"


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


def build_merkle_receipt(
    request_id: str,
    transfers: Sequence[Transfer],
    leaves: Sequence[str],
    checkpoint: Checkpoint | None,
) -> dict[str, Any]:
    """The version-2 receipt; ``leaves`` are the leaf hashes (hex) of positions 1..checkpoint.seq.

    Building the proofs hashes the whole tree: O(n) for a checkpoint at ``n``, however few
    transfers the request has. The store builds the same paths from stored subtree hashes in
    O(log n) reads and calls :func:`merkle_receipt`; this is its reference and its fallback.
    """
    paths: list[list[bytes]] = []
    if checkpoint is not None:
        assert len(leaves) == checkpoint.seq
        indices = [t.seq - 1 for t in transfers]
        paths = merkle.inclusion_proofs([bytes.fromhex(leaf) for leaf in leaves], indices)
    return merkle_receipt(request_id, transfers, paths, checkpoint)


def merkle_receipt(
    request_id: str,
    transfers: Sequence[Transfer],
    paths: Sequence[Sequence[bytes]],
    checkpoint: Checkpoint | None,
) -> dict[str, Any]:
    """The version-2 receipt from each transfer's audit path (in order) to the checkpoint's
    root, however they were computed; none without a checkpoint."""
    assert transfers and list(transfers) == sorted(transfers, key=lambda t: t.seq)
    inclusion: list[dict[str, Any]] = []
    if checkpoint is not None:
        assert checkpoint.merkle_root is not None and transfers[-1].seq <= checkpoint.seq
        inclusion = [
            {"leaf_index": t.seq - 1, "path": [node.hex() for node in path]}
            for t, path in zip(transfers, paths, strict=True)
        ]
    else:
        assert not paths
    return {
        "version": RECEIPT_VERSION,
        "request_id": request_id,
        "transfers": [transfer_to_dict(t) for t in transfers],
        "proof": PROOF_KIND,
        "inclusion": inclusion,
        "checkpoint": checkpoint.to_dict() if checkpoint else None,
    }


def build_segment_receipt(
    request_id: str,
    transfers: Sequence[Transfer],
    previous_hash: str,
    leaves: Sequence[str],
    checkpoint: Checkpoint | None,
) -> dict[str, Any]:
    """The version-1 receipt; ``leaves`` run from the first transfer to the checkpoint."""
    assert transfers and list(transfers) == sorted(transfers, key=lambda t: t.seq)
    start = transfers[0].seq
    if checkpoint is not None:
        assert len(leaves) == checkpoint.seq - start + 1
    return {
        "version": SEGMENT_RECEIPT_VERSION,
        "request_id": request_id,
        "transfers": [transfer_to_dict(t) for t in transfers],
        "proof": SEGMENT_PROOF_KIND,
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
    version = document.get("version")
    proofs = {RECEIPT_VERSION: PROOF_KIND, SEGMENT_RECEIPT_VERSION: SEGMENT_PROOF_KIND}
    if version not in proofs:
        return ReceiptCheck(False, f"unknown receipt version {version!r}")
    if document.get("proof") != proofs[version]:
        return ReceiptCheck(False, f"a {version} receipt carries a {proofs[version]} proof")
    request_id = str(document["request_id"])
    transfers = [transfer_from_dict(item) for item in document["transfers"]]
    if not transfers or any(t.reference != request_id for t in transfers):
        return ReceiptCheck(False, "the receipt's transfers do not all belong to its request")
    if any(t.seq < 1 for t in transfers):
        return ReceiptCheck(False, "a transfer has no chain position", request_id)
    if len({t.seq for t in transfers}) != len(transfers):
        # Else one ledger entry could be listed twice and counted twice in ``charged``.
        return ReceiptCheck(False, "a transfer is listed twice", request_id)
    if document["checkpoint"] is None:
        return ReceiptCheck(False, "no signed checkpoint covers this receipt yet", request_id)
    checkpoint = Checkpoint.from_dict(document["checkpoint"])
    if checkpoint.public_key != public_key_hex(public_key) or not signature_valid(
        checkpoint, public_key
    ):
        return ReceiptCheck(False, "the checkpoint is not signed by this public key", request_id)
    if version == RECEIPT_VERSION:
        problem = _inclusion_problem(document["inclusion"], transfers, checkpoint)
    else:
        problem = _segment_problem(document["segment"], transfers, checkpoint)
    if problem is not None:
        return ReceiptCheck(False, problem, request_id)
    charged = sum(
        (-t.amount if t.kind is TransferKind.REFUND else t.amount for t in transfers), Amount.zero()
    )
    return ReceiptCheck(True, None, request_id, checkpoint.seq, charged)


def _inclusion_problem(
    inclusion: list[dict[str, Any]], transfers: list[Transfer], checkpoint: Checkpoint
) -> str | None:
    """Each transfer's leaf must reach the signed Merkle root through its own audit path."""
    if checkpoint.merkle_root is None:
        return "the checkpoint signs no Merkle root"
    if len(inclusion) != len(transfers):
        return "the receipt needs one inclusion proof per transfer"
    root = bytes.fromhex(checkpoint.merkle_root)
    for transfer, proof in zip(transfers, inclusion, strict=True):
        index = int(proof["leaf_index"])
        if index != transfer.seq - 1:
            return f"transfer {transfer.id} is not at its stated leaf index"
        path = [bytes.fromhex(str(node)) for node in proof["path"]]
        leaf = bytes.fromhex(leaf_hash(transfer))
        if not merkle.verify_inclusion(leaf, index, checkpoint.seq, path, root):
            return f"transfer {transfer.id} is not in the checkpoint's Merkle tree"
    return None


def _segment_problem(
    segment: dict[str, Any], transfers: list[Transfer], checkpoint: Checkpoint
) -> str | None:
    """The segment's links must pass through each transfer and end at the signed chain hash."""
    start, leaves = int(segment["start_seq"]), [str(leaf) for leaf in segment["leaves"]]
    if len(leaves) != checkpoint.seq - start + 1:
        return "the segment does not reach the checkpoint"
    by_seq = {t.seq: t for t in transfers}
    running = str(segment["previous_hash"])
    for offset, leaf in enumerate(leaves):
        own = by_seq.pop(start + offset, None)
        if own is not None and leaf_hash(own) != leaf:
            return f"transfer {own.id} does not match its leaf"
        running = link_hash(running, leaf)
        if own is not None and own.hash != running:
            return f"transfer {own.id} is not at its stated chain position"
    if by_seq:
        return "a transfer lies outside the segment"
    if running != checkpoint.hash:
        return "the segment does not end at the checkpoint's hash"
    return None
