"""Imports of real-format price lists, and bad input: a clear error and nothing written.

The sample files under data/ are small extracts in the exact shapes LiteLLM's
model_prices_and_context_window.json and OpenRouter's /api/v1/models use. Each import is
checked rate by rate; each malformed variant must fail naming the entry or line, and the
operator file must be byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import json
from datetime import date
from fractions import Fraction
from pathlib import Path

import pytest

from ciyuan.pricing.catalog import Catalog
from ciyuan.pricing.errors import PriceError
from ciyuan.pricing.imports import read_prices
from ciyuan.pricing.operator_file import add_operator_prices

DATA = Path(__file__).parent / "data"
FROM = date(2030, 1, 1)


def read(name: str, format: str, **options: object) -> dict[str, object]:
    found = read_prices(
        (DATA / name).read_text(),
        format=format,
        origin=name,
        effective_from=FROM,
        **options,  # type: ignore[arg-type]
    )
    return {"prices": {p.model: p for p in found.prices}, "skipped": found.skipped}


def test_litellm_sample() -> None:
    result = read("litellm_model_prices.json", "litellm")
    prices = result["prices"]
    assert isinstance(prices, dict)
    assert sorted(prices) == [
        "claude-sonnet-4-5",
        "deepseek/deepseek-chat",
        "gpt-4o-audio-preview-2024-12-17",
        "gpt-4o-mini",
        "text-embedding-3-small",
    ]
    mini = prices["gpt-4o-mini"]
    assert (mini.input, mini.cache_read, mini.output, mini.provider) == (150, 75, 600, "openai")
    assert mini.batch_ratio == Fraction(1, 2)
    assert mini.effective_from == FROM
    sonnet = prices["claude-sonnet-4-5"]
    assert (sonnet.cache_write_5m, sonnet.cache_write_1h, sonnet.cache_read) == (3750, 6000, 300)
    (tier,) = sonnet.tiers
    assert (tier.above_input_tokens, tier.input, tier.output, tier.cache_read) == (
        200_000,
        6000,
        22500,
        600,
    )
    audio = prices["gpt-4o-audio-preview-2024-12-17"]
    assert (audio.audio_input, audio.audio_output) == (40_000, 80_000)
    assert prices["deepseek/deepseek-chat"].cache_read == 28
    assert prices["text-embedding-3-small"].batch_ratio is None  # output 0: no ratio to compare
    assert result["skipped"] == ("dall-e-3: no per-token input and output price",)


def test_openrouter_sample() -> None:
    result = read("openrouter_models.json", "openrouter")
    prices = result["prices"]
    assert isinstance(prices, dict)
    mini = prices["openai/gpt-4o-mini"]
    assert (mini.input, mini.cache_read, mini.output, mini.reasoning) == (150, 75, 600, 600)
    assert mini.provider == "openrouter"
    assert mini.context_window_tokens == 128000
    sonnet = prices["anthropic/claude-sonnet-4.5"]
    assert (sonnet.cache_write_5m, sonnet.cache_read) == (3750, 300)
    free = prices["meta-llama/llama-3.3-70b-instruct:free"]
    assert (free.input, free.output) == (0, 0)
    assert result["skipped"] == ("openrouter/auto: variable price (a router)",)


def test_filters_keep_matching_entries() -> None:
    by_provider = read("litellm_model_prices.json", "litellm", provider="anthropic")["prices"]
    assert list(by_provider) == ["claude-sonnet-4-5"]  # type: ignore[call-overload]
    by_glob = read("openrouter_models.json", "openrouter", model_glob="openai/*")["prices"]
    assert list(by_glob) == ["openai/gpt-4o-mini"]  # type: ignore[call-overload]


def test_csv_and_toml_samples() -> None:
    csv_prices = read("custom_prices.csv", "csv")["prices"]
    assert isinstance(csv_prices, dict)
    router = csv_prices["acme-router"]
    assert (router.input, router.cache_read, router.output, router.call_fee.nanos) == (
        1000,
        100,
        4000,
        1_000_000,
    )
    assert router.source == "contract 2025-117"
    assert router.effective_from == date(2025, 11, 1)
    qwen = csv_prices["my-vllm/qwen2.5-7b-instruct"]
    assert qwen.cache_read == qwen.input == 50  # empty cell: not priced apart
    toml_prices = read("custom_prices.toml", "toml")["prices"]
    assert isinstance(toml_prices, dict)
    assert toml_prices["my-vllm/llama-3.1-8b-instruct"].input == 20


def litellm_with(entry: dict[str, object]) -> str:
    base = json.loads((DATA / "litellm_model_prices.json").read_text())
    base["broken-model"] = entry
    return json.dumps(base)


@pytest.mark.parametrize(
    ("format", "text", "message"),
    [
        ("litellm", "{not json", "not valid JSON"),
        ("litellm", "[1, 2]", "JSON object of models"),
        (
            "litellm",
            litellm_with({"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06}),
            "'broken-model': input_cost_per_token -0.000001 must be a non-negative",
        ),
        (
            "litellm",
            litellm_with({"input_cost_per_token": "cheap", "output_cost_per_token": 1e-06}),
            "'broken-model': input_cost_per_token 'cheap' is not a number",
        ),
        (
            "litellm",
            litellm_with({"input_cost_per_token": 1.5e-10, "output_cost_per_token": 1e-06}),
            "'broken-model': input_cost_per_token .* finer than 1e-9",
        ),
        (
            "litellm",
            litellm_with({"input_cost_per_token": True, "output_cost_per_token": 1e-06}),
            "'broken-model': input_cost_per_token must be a number",
        ),
        ("litellm", litellm_with([]), "'broken-model': must be an object"),  # type: ignore[arg-type]
        ("openrouter", '{"models": []}', "'data' list"),
        (
            "openrouter",
            '{"data": [{"id": "x", "pricing": {"prompt": "0.1", "completion": "-0.2"}}]}',
            r"data\[0\] \('x'\): pricing.completion '-0.2' must be a non-negative",
        ),
        (
            "openrouter",
            '{"data": [{"id": "x", "pricing": {"prompt": "1e-6"}}]}',
            r"data\[0\] \('x'\): pricing.prompt and pricing.completion are required",
        ),
        (
            "openrouter",
            '{"data": [{"pricing": {}}]}',
            r"data\[0\]: must be an object with a string 'id'",
        ),
        ("csv", "model,input\nx,1\n", r"line 1: the header needs the columns \['output'\]"),
        ("csv", "model,input,output\nok,1,2\nbad,abc,2\n", "line 3 .*'bad'.*input"),
        ("csv", "model,input,output\nneg,-1,2\n", "line 2 .*'neg'.*input"),
        ("csv", "model,input,output,effective_from\nd,1,2,tomorrow\n", "line 2: effective_from"),
        ("csv", "model,input,output,colour\n", r"unknown columns \['colour'\]"),
        (
            "toml",
            'format = "ciyuan-prices/1"\n[[price]]\nmodel = "m"\n',
            "price entry 1 \\('m'\\): provider",
        ),
        ("toml", "[[price]\n", "not valid TOML"),
        ("toml", 'format = "other/9"\n', "format is 'other/9'"),
    ],
)
def test_malformed_files_name_the_entry(format: str, text: str, message: str) -> None:
    with pytest.raises(PriceError, match=message):
        read_prices(text, format=format, origin="f", effective_from=FROM)  # type: ignore[arg-type]


def test_import_appends_versions_and_is_idempotent(tmp_path: Path) -> None:
    prices_file = tmp_path / "prices.toml"
    found = read_prices(
        (DATA / "openrouter_models.json").read_text(),
        format="openrouter",
        origin="or.json",
        effective_from=FROM,
    )
    first = add_operator_prices(prices_file, found.prices)
    assert len(first.added) == 3
    loaded = Catalog.load(operator_file=prices_file)
    assert loaded.operator_prices == first.added
    # The same import again adds nothing: every price is already in force.
    again = add_operator_prices(prices_file, found.prices)
    assert again.added == ()
    assert sorted(again.unchanged) == sorted(p.model for p in found.prices)


def test_a_bad_import_leaves_the_file_unchanged(tmp_path: Path) -> None:
    prices_file = tmp_path / "prices.toml"
    good = read_prices(
        (DATA / "custom_prices.toml").read_text(), format="toml", origin="t", effective_from=FROM
    )
    add_operator_prices(prices_file, good.prices)
    before = prices_file.read_bytes()
    # Same model, an earlier date than its latest version: the whole import is refused.
    backdated = read_prices(
        'format = "ciyuan-prices/1"\n'
        '[[price]]\nmodel = "new-model"\nprovider = "p"\neffective_from = 2031-01-01\n'
        'source = "s"\ninput = 1\noutput = 1\n'
        '[[price]]\nmodel = "my-vllm/llama-3.1-8b-instruct"\nprovider = "p"\n'
        'effective_from = 2025-10-01\nsource = "s"\ninput = 1\noutput = 1\n',
        format="toml",
        origin="t",
        effective_from=FROM,
    )
    with pytest.raises(PriceError, match="rewrite history"):
        add_operator_prices(prices_file, backdated.prices)
    assert prices_file.read_bytes() == before
    assert "new-model" not in Catalog.load(operator_file=prices_file).models()


def test_a_broken_operator_file_is_reported_with_its_entry(tmp_path: Path) -> None:
    prices_file = tmp_path / "prices.toml"
    prices_file.write_text(
        'format = "ciyuan-prices/1"\n[[price]]\nmodel = "a"\nprovider = "p"\n'
        'effective_from = 2025-01-01\nsource = "s"\ninput = "abc"\noutput = 1\n'
    )
    with pytest.raises(PriceError, match=r"prices.toml: price entry 1 \('a'\): input"):
        Catalog.load(operator_file=prices_file)


def test_toml_float_prices_stay_exact(tmp_path: Path) -> None:
    found = read_prices(
        'format = "ciyuan-prices/1"\n[[price]]\nmodel = "m"\nprovider = "p"\n'
        'effective_from = 2030-01-01\nsource = "s"\ninput = 0.075\noutput = 0.3\n',
        format="toml",
        origin="t",
        effective_from=FROM,
    )
    assert (found.prices[0].input, found.prices[0].output) == (75, 300)
