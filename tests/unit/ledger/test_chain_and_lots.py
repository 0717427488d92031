"""The pure ledger rules: chain hashing and walking, lot order and expiry, charge splitting,
checkpoint signatures. Hypothesis checks the arithmetic rules over random inputs."""

from __future__ import annotations

from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from ciyuan.ledger.chain import GENESIS_HASH, chain_hash, walk
from ciyuan.ledger.checkpoints import (
    Checkpoint,
    checkpoint_message,
    load_public_key,
    public_key_hex,
    sign_checkpoint,
    signature_valid,
)
from ciyuan.ledger.grants import Lot, consume, expiring, opened_lot_nanos
from ciyuan.ledger.transfers import Transfer, TransferKind, split_charge
from ciyuan.pricing.money import Amount


def chain_of(count: int) -> list[Transfer]:
    transfers, previous = [], GENESIS_HASH
    for seq in range(1, count + 1):
        transfer = Transfer(f"trf_{seq}", "acc_funding", "acc_a", Amount(seq), TransferKind.GRANT,
                            None, None, 1_000 + seq, None, seq)  # fmt: skip
        previous = chain_hash(previous, transfer)
        transfers.append(replace(transfer, hash=previous))
    return transfers


def test_an_intact_chain_walks_to_its_head() -> None:
    chain = chain_of(5)
    report = walk(chain, 5, chain[-1].hash)
    assert report.ok and report.entries_checked == 5


def first_fault(transfers: list[Transfer], head: tuple[int, str]) -> tuple[int, str]:
    problem = walk(transfers, *head).problem
    assert problem is not None, "tampering went unnoticed"
    return problem.seq, problem.kind


def test_each_kind_of_tampering_is_named_at_its_position() -> None:
    chain = chain_of(5)
    head = (5, chain[-1].hash)
    assert first_fault([*chain[:2], replace(chain[2], amount=Amount(99)), *chain[3:]], head) == (
        3,
        "altered",
    )
    assert first_fault([*chain[:2], *chain[3:]], head) == (3, "removed")
    swapped = [chain[0], replace(chain[2], seq=2), replace(chain[1], seq=3), *chain[3:]]
    assert first_fault(swapped, head) == (2, "altered")
    assert first_fault(chain[:4], head) == (5, "truncated")


@given(st.lists(st.tuples(st.integers(0, 100), st.one_of(st.none(), st.integers(0, 50))),
                max_size=8),
       st.integers(0, 500))  # fmt: skip
def test_consume_takes_the_earliest_expiring_lots_first_and_never_more(
    specs: list[tuple[int, int | None]], amount: int
) -> None:
    lots = [Lot(f"lot{i}", remaining, expires, i) for i, (remaining, expires) in enumerate(specs)]
    taken = consume(lots, amount)
    assert sum(n for _, n in taken) == min(amount, sum(lot.remaining_nanos for lot in lots))
    by_id = {lot.id: lot for lot in lots}
    for lot_id, nanos in taken[:-1]:
        assert nanos == by_id[lot_id].remaining_nanos  # only the last lot is taken in part
    expiries = [by_id[lot_id].expires_us for lot_id, _ in taken]
    dated = [e for e in expiries if e is not None]
    assert dated == sorted(dated)
    assert expiries[: len(dated)] == dated  # lots that never expire come last


def test_expiry_takes_only_expired_lots_and_only_free_credit() -> None:
    lots = [Lot("a", 5, 10, 1), Lot("b", 5, 100, 2), Lot("c", 5, None, 3)]
    assert expiring(lots, 50, 100) == [("a", 5)]
    assert expiring(lots, 50, 3) == [("a", 3)]
    assert expiring(lots, 50, -4) == []


@given(st.integers(1, 10**6), st.integers(-(10**6), 10**6))
def test_a_credit_opens_a_lot_for_what_is_left_above_zero(amount: int, posted: int) -> None:
    opened = opened_lot_nanos(amount, posted)
    assert 0 <= opened <= amount
    assert opened == max(0, posted + amount) - max(0, posted)


@given(st.integers(0, 1000), st.integers(0, 500), st.booleans(), st.integers(-200, 1000))
def test_a_charge_split_adds_up_and_stays_within_headroom(
    cost: int, reserved: int, held: bool, headroom: int
) -> None:
    hold = reserved if held else 0
    split = split_charge(Amount(cost), Amount(reserved), Amount(hold), Amount(max(headroom, hold)))
    assert split.charge + split.overage + split.unbilled == Amount(cost)
    assert (
        split.charge <= Amount(reserved) and split.overage.nanos >= 0 and split.unbilled.nanos >= 0
    )
    assert (split.charge + split.overage).nanos <= max(hold, headroom, 0) or cost <= hold


def test_a_checkpoint_signature_binds_every_field() -> None:
    key = Ed25519PrivateKey.generate()
    signed = sign_checkpoint(key, 7, "ab" * 32, 123, "ef" * 32)
    public = load_public_key(signed.public_key)
    assert signature_valid(signed, public)
    for forged in (
        replace(signed, seq=8),
        replace(signed, hash="cd" * 32),
        replace(signed, created_us=124),
        replace(signed, merkle_root="ee" * 32),
        replace(signed, merkle_root=None),  # stripped back to a version-1 message
        replace(signed, merkle_root="ef" * 31),
        replace(signed, hash="ab"),
    ):
        assert not signature_valid(forged, public)


def test_a_checkpoint_signed_before_merkle_roots_still_verifies() -> None:
    """A version-1 checkpoint has no root; adding one to it breaks its signature."""
    key = Ed25519PrivateKey.generate()
    message = checkpoint_message(7, "ab" * 32, 123, None)
    assert message == f"ciyuan.checkpoint.v1\n7\n{'ab' * 32}\n123\n".encode()
    old = Checkpoint(7, "ab" * 32, 123, public_key_hex(key), key.sign(message).hex())
    assert signature_valid(old, key.public_key())
    assert Checkpoint.from_dict(old.to_dict()) == old
    assert not signature_valid(replace(old, merkle_root="ef" * 32), key.public_key())
