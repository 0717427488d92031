"""The non-chat APIs (completions, embeddings, responses, Anthropic messages) and the
operator's configuration: aliases, a default encoding, and Hugging Face tokenizer files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from ciyuan.errors import InvalidRequest
from ciyuan.tokens import TokenizerConfig, configure, count_request, count_text, encoding_name_for


@pytest.fixture
def restore_config() -> Iterator[None]:
    yield
    configure(TokenizerConfig())


def test_completions_and_embeddings_count_text_and_token_arrays() -> None:
    hello = count_text("gpt-3.5-turbo-instruct", "hello world").tokens
    for api, key in (("completions", "prompt"), ("embeddings", "input")):
        model = "gpt-3.5-turbo-instruct" if api == "completions" else "text-embedding-3-small"
        assert count_request(model, {key: "hello world"}, api=api).total == hello
        both = count_request(model, {key: ["hello world", "hello world"]}, api=api)
        assert both.total == 2 * hello and both.exact and both.overhead == 0
        assert count_request(model, {key: [1, 2, 3]}, api=api).total == 3
        assert count_request(model, {key: [[1, 2], [3]]}, api=api).total == 3
        with pytest.raises(InvalidRequest) as caught:
            count_request(model, {key: ["ok", {"x": 1}]}, api=api)
        assert caught.value.param == f"{key}[1]"


def test_responses_api_is_a_labelled_chat_estimate() -> None:
    body = {
        "instructions": "Be brief.",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Hi there"}]},
            {"type": "function_call", "name": "f", "arguments": "{}", "call_id": "c1"},
            {"type": "function_call_output", "call_id": "c1", "output": "42"},
        ],
        "tools": [{"type": "function", "name": "f", "description": "d", "parameters": {}}],
    }
    result = count_request("gpt-4o", body, api="responses")
    assert not result.exact and result.tools > 0 and result.text > 0
    simple = count_request("gpt-4o", {"input": "Hi there"}, api="responses")
    chat = count_request("gpt-4o", {"messages": [{"role": "user", "content": "Hi there"}]})
    assert simple.total == chat.total
    with pytest.raises(InvalidRequest) as caught:
        count_request("gpt-4o", {"input": [{"role": "user", "content": 3}]}, api="responses")
    assert caught.value.param == "input[0].content"


def test_anthropic_messages_estimate() -> None:
    body = {
        "system": "You are terse.",
        "messages": [
            {"role": "user", "content": "Hello, Claude"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hi."}]},
        ],
        "tools": [{"name": "get_weather", "description": "Weather", "input_schema": {}}],
    }
    result = count_request("claude-sonnet-4-5", body, api="anthropic_messages")
    assert not result.exact
    assert result.overhead >= 3 * 3 + 346
    assert any("claude" in note for note in result.notes)
    with pytest.raises(InvalidRequest) as caught:
        count_request(
            "claude-sonnet-4-5",
            {"messages": [{"role": "user", "content": 1}]},
            api="anthropic_messages",
        )
    assert caught.value.param == "messages[0].content"


def test_body_must_be_an_object() -> None:
    with pytest.raises(InvalidRequest):
        count_request("gpt-4o", ["not", "a", "dict"])  # type: ignore[arg-type]


def test_aliases_and_default_encoding(restore_config: None) -> None:
    assert encoding_name_for("my-azure-deployment") is None
    configure(
        TokenizerConfig(aliases={"my-azure-deployment": "gpt-4o"}, default_encoding="cl100k_base")
    )
    assert encoding_name_for("my-azure-deployment") == "o200k_base"
    assert count_text("my-azure-deployment", "hi").exact
    assert encoding_name_for("mystery") == "cl100k_base"
    mystery = count_text("mystery", "hi")
    assert not mystery.exact and mystery.rule and "default" in mystery.rule


def test_hugging_face_tokenizer_file_is_exact(tmp_path: Path, restore_config: None) -> None:
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]", "<|eot|>"])
    tokenizer.train_from_iterator(["hello world, hello tokens"] * 50, trainer=trainer)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    configure(TokenizerConfig(tokenizer_files={"my-llama*": str(path)}))
    assert encoding_name_for("my-llama-3-8b") == f"hf:{path}"
    result = count_text("my-llama-3-8b", "hello world")
    assert result.exact
    assert result.tokens == len(tokenizer.encode("hello world", add_special_tokens=False).ids)
    # Special-token text in user input is plain text here too.
    assert count_text("my-llama-3-8b", "<|eot|>").tokens > 1
    chat = count_request("my-llama-3-8b", {"messages": [{"role": "user", "content": "hello"}]})
    assert not chat.exact and chat.notes


def test_retired_encodings_without_data_are_labelled_estimates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_config: None
) -> None:
    assert encoding_name_for("text-davinci-003") == "p50k_base"
    assert encoding_name_for("davinci") == "r50k_base"
    result = count_text("text-davinci-003", "hello world")
    assert not result.exact and result.rule and "p50k_base" in result.rule
    # A file that does not match tiktoken's pinned hash is refused, never trusted.
    (tmp_path / "r50k_base.tiktoken").write_bytes(b"aGVsbG8= 0\n")
    monkeypatch.setenv("CIYUAN_TIKTOKEN_DIR", str(tmp_path))
    configure(TokenizerConfig())
    refused = count_request("davinci", {"prompt": "hello"}, api="completions")
    assert not refused.exact and refused.total > 0
