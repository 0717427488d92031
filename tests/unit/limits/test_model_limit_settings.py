"""``model_limits`` from ciyuan.toml ``[[model_limits]]`` and from ``CIYUAN_MODEL_LIMITS``,
into the admission policy (first matching glob applies)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciyuan.bootstrap import rate_policy
from ciyuan.gateway.admission import ModelLimit
from ciyuan.settings import load_settings


def test_model_limits_from_the_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ciyuan.toml"
    config.write_text(
        '[[model_limits]]\nmodel = "gpt-4o*"\nrpm = 10\n\n'
        '[[model_limits]]\nmodel = "claude-*"\ntpm = 5000\nconcurrency = 2\n'
    )
    monkeypatch.setenv("CIYUAN_CONFIG", str(config))
    monkeypatch.delenv("CIYUAN_MODEL_LIMITS", raising=False)
    policy = rate_policy(load_settings())
    assert policy.model_limits == (
        ModelLimit("gpt-4o*", rpm=10),
        ModelLimit("claude-*", tpm=5000, concurrency=2),
    )
    assert policy.has_rate_rules
    assert policy.model_limit("gpt-4o-mini") == ModelLimit("gpt-4o*", rpm=10)
    assert policy.model_limit("gpt-4.1") is None


def test_model_limits_from_the_environment_as_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIYUAN_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv(
        "CIYUAN_MODEL_LIMITS",
        '[{"model": "gpt-4o", "rpm": 1}, {"model": "gpt-4o*", "rpm": 9, "tpm": null}]',
    )
    policy = rate_policy(load_settings())
    assert policy.model_limit("gpt-4o") == ModelLimit("gpt-4o", rpm=1)
    assert policy.model_limit("gpt-4o-mini") == ModelLimit("gpt-4o*", rpm=9)
