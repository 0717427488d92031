"""API keys for fleets through the store and the metering pipeline, on SQLite and PostgreSQL.

Scopes, tags and rate-limit numbers must round-trip; rotation must copy them to a new key and
end the old key after the overlap (never later than it already ended); the pipeline must refuse
an expired key (401) and a model or API outside the scope (403, naming the scope) before any
credit is held. Time is a FixedClock, moved by hand.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ciyuan import apikeys
from ciyuan.clock import US_PER_S, FixedClock
from ciyuan.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from ciyuan.metering.pipeline import Metering, MeteringPolicy
from ciyuan.metering.ports import KeyOptions, Store
from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.money import Amount
from ciyuan.store import open_store

MODEL = "gpt-4o-mini"
CATALOG = Catalog.load_default()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def store(db_url: str, clock: FixedClock) -> Iterator[Store]:
    opened = open_store(db_url, clock=clock)
    yield opened
    opened.close()


def metering(store: Store, clock: FixedClock) -> Metering:
    # A zero auth-cache TTL: every authenticate reads the store, as after the TTL in production.
    policy = MeteringPolicy(
        reservation_timeout_s=60,
        output_tokens_default=100,
        auth_cache_ttl_s=0,
        allow_unpriced_models=False,
    )
    return Metering(store, CATALOG, policy, clock)


def new_key(store: Store, account_id: str, options: KeyOptions | None = None) -> str:
    new = apikeys.generate()
    store.create_api_key(account_id, new.prefix, new.hash_hex, "fleet", options)
    return new.secret.reveal()


SCOPED = KeyOptions(
    models=("gpt-4o*", "claude-*"),
    apis=("chat", "anthropic_messages"),
    metadata={"team": "search", "env": "prod"},
    rpm=60,
    tpm=10_000,
    concurrency_max=4,
)


def test_scopes_tags_and_limits_round_trip(store: Store, clock: FixedClock) -> None:
    acme = store.create_account("acme")
    options = KeyOptions(**{**_fields(SCOPED), "expires_us": clock.now_us() + 3600 * US_PER_S})
    raw = new_key(store, acme.id, options)
    found = store.find_api_key(raw.split("_")[0])
    assert found is not None
    assert (found.models, found.apis, found.metadata) == (
        SCOPED.models,
        SCOPED.apis,
        SCOPED.metadata,
    )
    assert (found.rpm, found.tpm, found.concurrency_max) == (60, 10_000, 4)
    assert found.expires_us == options.expires_us and found.usable_at(clock.now_us())
    # A key made without options has no restriction at all (None, not "nothing allowed").
    plain = store.find_api_key(new_key(store, acme.id).split("_")[0])
    assert plain is not None and plain.models is None and plain.apis is None
    assert plain.metadata == {} and plain.rpm is None and plain.expires_us is None
    assert [k.prefix for k in store.list_api_keys(acme.id)] == [found.prefix, plain.prefix]
    with pytest.raises(InvalidRequest):
        new_key(store, acme.id, KeyOptions(rpm=0))


def _fields(options: KeyOptions) -> dict[str, object]:
    return {name: getattr(options, name) for name in KeyOptions.__slots__}


def test_rotation_copies_the_key_and_ends_the_old_one_after_the_overlap(
    store: Store, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    old_raw = new_key(store, acme.id, SCOPED)
    old_prefix = old_raw.split("_")[0]
    replacement = apikeys.generate()
    old, new = store.rotate_api_key(
        old_prefix, replacement.prefix, replacement.hash_hex, overlap_s=3600
    )
    assert old.expires_us == clock.now_us() + 3600 * US_PER_S
    assert new.rotated_from_id == old.id and new.account_id == acme.id and new.label == "fleet"
    assert (new.models, new.apis, new.metadata, new.rpm) == (
        SCOPED.models, SCOPED.apis, SCOPED.metadata, 60,
    )  # fmt: skip
    assert new.expires_us is None

    meter = metering(store, clock)
    new_raw = replacement.secret.reveal()
    clock.advance(3599)
    assert meter.authenticate(old_raw).id == old.id, "the old key works during the overlap"
    assert meter.authenticate(new_raw).id == new.id
    clock.advance(1)
    with pytest.raises(AuthenticationFailed, match="expired"):
        meter.authenticate(old_raw)
    assert meter.authenticate(new_raw).id == new.id

    # An expired key cannot be rotated; a rotation never extends an earlier expiry.
    with pytest.raises(InvalidRequest, match="revoked or expired"):
        store.rotate_api_key(old.id, "ck-zzzzzzzz", "0" * 64, overlap_s=60)
    short = new_key(store, acme.id, KeyOptions(expires_us=clock.now_us() + 60 * US_PER_S))
    kept, _ = store.rotate_api_key(short.split("_")[0], "ck-yyyyyyyy", "1" * 64, overlap_s=3600)
    assert kept.expires_us == clock.now_us() + 60 * US_PER_S


def test_expired_key_is_401_and_scope_is_403_before_any_hold(
    store: Store, clock: FixedClock
) -> None:
    acme = store.create_account("acme")
    store.grant(acme.id, Amount.parse("5"))
    meter = metering(store, clock)
    expiring = new_key(store, acme.id, KeyOptions(expires_us=clock.now_us() + US_PER_S))
    assert meter.authenticate(expiring).account_id == acme.id
    clock.advance(1)
    with pytest.raises(AuthenticationFailed, match="expired") as caught:
        meter.authenticate(expiring)
    assert caught.value.code == "invalid_api_key"

    scoped = meter.authenticate(new_key(store, acme.id, SCOPED))
    meter.check_scope(scoped, "chat", "gpt-4o-mini")
    meter.check_scope(scoped, "anthropic_messages", "claude-3-5-haiku-20241022")
    with pytest.raises(PermissionDenied, match=r"embeddings API.*allows: chat, anthropic_messages"):
        meter.check_scope(scoped, "embeddings", "gpt-4o-mini")
    with pytest.raises(
        PermissionDenied, match=r"'o3-mini'.*matching: gpt-4o\*, claude-\*"
    ) as denied:
        meter.check_scope(scoped, "chat", "o3-mini")
    assert denied.value.code == "permission_denied"
    # admit checks the scope again, so nothing is reserved for a request outside it.
    with pytest.raises(PermissionDenied):
        meter.admit(
            scoped, api="chat", model="o3-mini", upstream="demo", prompt_tokens=10,
            output_tokens_max=10, price=CATALOG.price_for("o3-mini"),
        )  # fmt: skip
    assert store.balance(acme.id).pending == Amount.zero()
    ticket = meter.admit(
        scoped, api="chat", model=MODEL, upstream="demo", prompt_tokens=10,
        output_tokens_max=10, price=CATALOG.price_for(MODEL),
    )  # fmt: skip
    meter.void(ticket, error_code="test", http_status=500)

    names = [
        "gpt-4o",
        "gpt-4o-mini",
        "o3-mini",
        "claude-3-5-haiku-20241022",
        "text-embedding-3-small",
    ]
    assert meter.allowed_models(scoped, names) == [
        "gpt-4o",
        "gpt-4o-mini",
        "claude-3-5-haiku-20241022",
    ]
    unscoped = meter.authenticate(new_key(store, acme.id))
    assert meter.allowed_models(unscoped, names) == names
