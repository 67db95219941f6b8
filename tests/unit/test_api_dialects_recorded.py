"""The dialect shapers on answers recorded from real llama-server and mlx_lm.server
(tests/data/dialects/README.md), fed as the relay feeds them: whole, and cut at every byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mesh_node.api.dialects import sse
from mesh_node.api.dialects.anthropic_stream import AnthropicShaper
from mesh_node.api.dialects.base import Shaper
from mesh_node.api.dialects.ollama_stream import OllamaShaper
from mesh_node.api.dialects.openai import OpenAiShaper

DATA = Path(__file__).resolve().parents[1] / "data" / "dialects"
NAME = "mesh-model"
FOLDER = "/tmp/wt-api-mlx/tiny-mlx-llama"  # what the recorded MLX host echoed


def _raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def _chat_text(raw: bytes) -> str:
    """The text the upstream streamed, read straight from its chunks."""
    docs = [sse.json_data(e) for e in sse.EventSplitter().feed(raw)]
    return "".join((c.get("delta") or {}).get("content") or ""
                   for d in docs if d for c in d.get("choices") or [])


def _shapers() -> dict[str, Shaper]:
    return {"openai": OpenAiShaper(NAME), "anthropic": AnthropicShaper(NAME, "req_x"),
            "ollama": OllamaShaper(NAME, "chat", lambda: 0.0, lambda: 0)}


def _shape(shaper: Shaper, raw: bytes, step: int) -> bytes:
    stream = shaper.stream()
    pieces = [stream.feed(raw[i:i + step]) for i in range(0, len(raw), step)]
    return b"".join(pieces) + stream.end()


def _docs(dialect: str, out: bytes) -> list[dict[str, Any]]:
    if dialect == "ollama":
        return [json.loads(line) for line in out.splitlines()]
    return [d for e in sse.EventSplitter().feed(out) if (d := sse.json_data(e)) is not None]


def _text(dialect: str, docs: list[dict[str, Any]]) -> str:
    if dialect == "openai":
        return "".join((c.get("delta") or {}).get("content") or ""
                       for d in docs for c in d.get("choices") or [])
    if dialect == "anthropic":
        return "".join(d["delta"].get("text", "") for d in docs
                       if d["type"] == "content_block_delta")
    return "".join(d["message"]["content"] for d in docs)


def _models(dialect: str, docs: list[dict[str, Any]]) -> set[str]:
    if dialect == "anthropic":
        return {d["message"]["model"] for d in docs if d["type"] == "message_start"}
    return {d["model"] for d in docs}


@pytest.mark.parametrize("dialect", ["openai", "anthropic", "ollama"])
@pytest.mark.parametrize("recording", ["llama_chat_stream.sse", "mlx_chat_stream.sse"])
def test_recorded_stream_keeps_text_and_names_the_mesh_model(recording: str,
                                                             dialect: str) -> None:
    raw = _raw(recording)
    out = _shape(_shapers()[dialect], raw, len(raw))
    assert _shape(_shapers()[dialect], raw, 1) == out  # cut anywhere: the same stream
    docs = _docs(dialect, out)
    assert _text(dialect, docs) == _chat_text(raw) != ""
    assert _models(dialect, docs) == {NAME}
    assert FOLDER.encode() not in out


def test_recorded_anthropic_stream_has_usage_and_stop_reason() -> None:
    for recording in ("llama_chat_stream.sse", "mlx_chat_stream.sse"):
        docs = _docs("anthropic", _shape(_shapers()["anthropic"], _raw(recording), 7))
        delta = next(d for d in docs if d["type"] == "message_delta")
        assert delta["delta"]["stop_reason"] == "max_tokens"  # both stopped at max_tokens 8
        assert delta["usage"]["output_tokens"] == 8 and delta["usage"]["input_tokens"] > 0
        assert docs[-1] == {"type": "message_stop"}


def test_recorded_ollama_stream_summary_uses_llama_timings() -> None:
    docs = _docs("ollama", _shape(_shapers()["ollama"], _raw("llama_chat_stream.sse"), 50))
    last = docs[-1]
    assert last["done"] and last["done_reason"] == "length" and last["eval_count"] == 8
    assert last["prompt_eval_count"] == 15
    assert last["prompt_eval_duration"] == 424_545_000 and last["eval_duration"] == 575_630_000


def test_recorded_tool_call_stream_becomes_a_tool_use_block() -> None:
    docs = _docs("anthropic", _shape(_shapers()["anthropic"], _raw("llama_tools_stream.sse"),
                                     64))
    blocks = [d["content_block"] for d in docs if d["type"] == "content_block_start"]
    assert [b["type"] for b in blocks] == ["text", "tool_use"]
    assert blocks[1]["name"] == "get_weather" and blocks[1]["id"].startswith("toolu_")
    stops = [d["index"] for d in docs if d["type"] == "content_block_stop"]
    assert stops == [0, 1]


@pytest.mark.parametrize("recording", ["llama_chat.json", "mlx_chat.json"])
def test_recorded_whole_answers(recording: str) -> None:
    raw = _raw(recording)
    text = json.loads(raw)["choices"][0]["message"]["content"]
    shapers = _shapers()
    _, oai = shapers["openai"].body(200, "application/json", raw)
    _, ant = shapers["anthropic"].body(200, "application/json", raw)
    _, oll = shapers["ollama"].body(200, "application/json", raw)
    assert json.loads(oai)["model"] == NAME and json.loads(oai)["choices"][0]["message"][
        "content"] == text
    msg = json.loads(ant)
    assert msg["model"] == NAME and msg["content"] == [{"type": "text", "text": text}]
    assert msg["stop_reason"] == "max_tokens" and msg["usage"]["output_tokens"] == 8
    doc = json.loads(oll)
    assert doc["model"] == NAME and doc["message"]["content"] == text and doc["done"]
