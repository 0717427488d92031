"""The price catalog: the shipped data, name resolution, versions by date, operator layering.

Versioning is checked the way it matters for billing: price a request, add a later version,
price the same request again at its original time and get the same answer.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from ciyuan.pricing.catalog import Catalog, ModelPrice, candidate_names
from ciyuan.pricing.cost import cost_of
from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.usage import Usage

REQUIRED = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "deepseek-chat",
    "deepseek-reasoner",
    "mistral-large",
    "mistral-medium",
    "mistral-small",
    "llama-3.3-70b-versatile",
    "llama-3.1-8b-instant",
    "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
    "Qwen/Qwen2.5-72B-Instruct-Turbo",
]
NOW = datetime(2025, 12, 1, tzinfo=UTC)


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def custom(model: str, effective: str, input_nanos: int, **extra: object) -> ModelPrice:
    return ModelPrice(
        model=model,
        provider="operator",
        effective_from=date.fromisoformat(effective),
        source="operator",
        input=input_nanos,
        output=input_nanos * 4,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load_default()


@pytest.mark.parametrize("model", REQUIRED)
def test_shipped_catalog_prices_each_required_model_with_a_source(
    catalog: Catalog, model: str
) -> None:
    found = catalog.price_for(model, NOW)
    assert found is not None
    assert found.model == model
    assert "as of" in found.source or "launch" in found.source
    assert found.source.startswith("https://")
    assert found.input > 0


def test_list_prices_spot_checks(catalog: Catalog) -> None:
    mini = catalog.price_for("gpt-4o-mini", NOW)
    assert mini is not None and (mini.input, mini.cache_read, mini.output) == (150, 75, 600)
    haiku = catalog.price_for("claude-haiku-4-5", NOW)
    assert haiku is not None
    assert (haiku.input, haiku.cache_write_5m, haiku.cache_write_1h, haiku.cache_read) == (
        1000,
        1250,
        2000,
        100,
    )
    assert haiku.reasoning == haiku.output == 5000


@pytest.mark.parametrize(
    ("asked", "resolved"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai/gpt-4o", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an exact snapshot with its own price wins
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("anthropic/claude-haiku-4-5", "claude-haiku-4-5"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("models/gemini-2.5-pro", "gemini-2.5-pro"),
        ("GPT-4.1-NANO", "gpt-4.1-nano"),
        ("mistral-small-latest", "mistral-small"),
        ("gpt-5-mini-2025-08-07", "gpt-5-mini"),
    ],
)
def test_names_resolve_like_a_router(catalog: Catalog, asked: str, resolved: str) -> None:
    found = catalog.price_for(asked, NOW)
    assert found is not None
    assert found.model == resolved


@pytest.mark.parametrize("asked", ["gpt-4o-mini-turbo", "gpt", "claude", "", "gpt-4o-minis"])
def test_no_prefix_matching(catalog: Catalog, asked: str) -> None:
    assert catalog.price_for(asked, NOW) is None


def test_candidate_names_are_unique_and_most_specific_first() -> None:
    names = list(candidate_names("openai/gpt-4o-2024-08-06"))
    assert names[0] == "openai/gpt-4o-2024-08-06"
    assert names.index("gpt-4o-2024-08-06") < names.index("gpt-4o")
    assert len(names) == len(set(names))


def test_versions_by_effective_date(catalog: Catalog) -> None:
    before = catalog.price_for("o3", day("2025-05-01"))
    after = catalog.price_for("o3", day("2025-06-10"))
    assert before is not None and after is not None
    assert (before.input, after.input) == (10_000, 2_000)
    assert catalog.price_for("o3", day("2025-04-15")) is None  # before the model was priced
    assert [v.effective_from for v in catalog.versions("deepseek-chat")] == [
        date(2025, 2, 9),
        date(2025, 9, 5),
        date(2025, 9, 29),
    ]


def test_effective_date_is_a_utc_day(catalog: Catalog) -> None:
    # 23:30 on June 9 in UTC-2 is already June 10 in UTC: the new o3 price applies.
    late = datetime(2025, 6, 9, 23, 30, tzinfo=timezone(timedelta(hours=-2)))
    found = catalog.price_for("o3", late)
    assert found is not None and found.input == 2_000


def test_a_new_version_leaves_old_requests_priced_the_same(catalog: Catalog) -> None:
    usage = Usage(input_tokens=1000, output_tokens=100)
    then = day("2025-10-01")
    old_price = catalog.price_for("gpt-4o-mini", then)
    assert old_price is not None
    before = cost_of(usage, old_price)
    changed = catalog.with_operator_prices([custom("gpt-4o-mini", "2025-11-01", 999)])
    repriced = changed.price_for("gpt-4o-mini", then)
    assert repriced is not None
    assert cost_of(usage, repriced) == before
    now = changed.price_for("gpt-4o-mini", NOW)
    assert now is not None and now.input == 999
    # The original catalog object is unchanged.
    assert catalog.price_for("gpt-4o-mini", NOW) == old_price


def test_operator_layer_wins_only_once_in_force(catalog: Catalog) -> None:
    layered = catalog.with_operator_prices([custom("gpt-4o", "2026-01-01", 1)])
    shipped = layered.price_for("gpt-4o", NOW)
    assert shipped is not None and shipped.provider == "openai"
    # An alias of the shipped model reaches the operator version too.
    override = layered.price_for("gpt-4o-2024-08-06", day("2026-02-01"))
    assert override is not None and override.provider == "operator"


def test_operator_can_price_a_custom_model(catalog: Catalog) -> None:
    layered = catalog.with_operator_prices([custom("my-vllm/llama-3-8b", "2025-01-01", 10)])
    assert "my-vllm/llama-3-8b" in layered.models()
    found = layered.price_for("my-vllm/llama-3-8b", NOW)
    assert found is not None and found.input == 10


def test_overlapping_effective_dates_are_refused() -> None:
    with pytest.raises(PriceError, match=r"2025-03-01.*overlap"):
        Catalog([custom("m", "2025-03-01", 1), custom("m", "2025-03-01", 2)])


def test_appending_a_version_not_after_the_latest_is_refused(catalog: Catalog) -> None:
    layered = catalog.with_operator_prices([custom("m", "2025-03-01", 1)])
    for effective in ("2025-03-01", "2025-02-01"):
        with pytest.raises(PriceError, match="rewrite history"):
            layered.with_operator_prices([custom("m", effective, 2)])
    assert layered.versions("m") == [custom("m", "2025-03-01", 1)]


def test_an_alias_claimed_twice_is_refused() -> None:
    with pytest.raises(PriceError, match="'x' is claimed"):
        Catalog(
            [
                custom("a", "2025-01-01", 1, aliases=("x",)),
                custom("b", "2025-01-01", 1, aliases=("x",)),
            ]
        )


def test_a_naive_datetime_is_a_programmer_error(catalog: Catalog) -> None:
    with pytest.raises(AssertionError):
        catalog.price_for("gpt-4o", datetime(2025, 1, 1))


def test_current_lists_one_price_per_model(catalog: Catalog) -> None:
    current = catalog.current(NOW)
    assert len({p.model for p in current}) == len(current)
    assert {p.model for p in current} >= set(REQUIRED)
