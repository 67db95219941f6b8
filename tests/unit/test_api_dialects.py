"""Pure dialect cores: requests to chat completions, answers and streams back, error shapes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mesh_node.api import errors
from mesh_node.api.dialects import anthropic, ollama, sse
from mesh_node.api.dialects.anthropic_stream import AnthropicShaper
from mesh_node.api.dialects.openai import OpenAiShaper
from mesh_node.api.dialects.shapes import dialect_of, error_body

MODEL = "tiny-mlx-llama"
FOLDER = "/root/.cache/huggingface/hub/models--x/snapshots/abc/tiny-mlx-llama"


def _chunk(delta: dict[str, Any], finish: str | None = None, model: str = FOLDER,
           **extra: Any) -> bytes:
    doc = {"id": "chatcmpl-42", "object": "chat.completion.chunk", "model": model,
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(doc)}\n\n".encode()


TEXT_STREAM = [b": keepalive 1/2\n\n", _chunk({"role": "assistant", "content": ""}),
               _chunk({"content": "Hel"}), _chunk({"content": "lo"}), _chunk({}, "stop"),
               b'data: {"id":"chatcmpl-42","model":"' + FOLDER.encode() + b'","choices":[],'
               b'"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}\n\n',
               b"data: [DONE]\n\n"]


def _feed_bytewise(stream: Any, chunks: list[bytes]) -> bytes:
    data = b"".join(chunks)
    return b"".join(stream.feed(data[i:i + 1]) for i in range(len(data))) + stream.end()


def _events(raw: bytes) -> list[tuple[str | None, dict[str, Any]]]:
    out = []
    for ev in sse.EventSplitter().feed(raw):
        name = next((line[7:].decode() for line in ev.splitlines()
                     if line.startswith(b"event: ")), None)
        doc = sse.json_data(ev)
        assert doc is not None, ev
        out.append((name, doc))
    return out


# --- SSE and the OpenAI model rewrite ------------------------------------------------------

def test_sse_splitter_cuts_whole_events_across_chunks() -> None:
    s = sse.EventSplitter()
    assert s.feed(b"data: 1\n") == []
    assert s.feed(b"\ndata: 2\r\n\r\nda") == [b"data: 1\n\n", b"data: 2\r\n\r\n"]
    assert s.feed(b"ta: 3\n\n") == [b"data: 3\n\n"]
    assert s.rest() == b""


def test_openai_stream_names_the_mesh_model_in_every_chunk() -> None:
    out = _feed_bytewise(OpenAiShaper(MODEL).stream(), TEXT_STREAM)
    data = [sse.json_data(ev) for ev in sse.EventSplitter().feed(out)]
    docs = [d for d in data if d is not None]
    assert len(docs) == 5 and all(d["model"] == MODEL for d in docs)
    assert FOLDER not in out.decode()
    assert out.startswith(b": keepalive 1/2\n\n") and out.endswith(b"data: [DONE]\n\n")


def test_openai_stream_leaves_right_chunks_byte_for_byte() -> None:
    chunk = _chunk({"content": 'say "model": "x"'}, model=MODEL)
    assert OpenAiShaper(MODEL).stream().feed(chunk) == chunk


def test_openai_body_rewrites_model_only_in_json() -> None:
    shaper = OpenAiShaper(MODEL)
    ctype, body = shaper.body(200, "application/json", json.dumps({"model": FOLDER}).encode())
    assert json.loads(body) == {"model": MODEL}
    assert shaper.body(200, "text/plain", b'{"model": "x"}') == ("text/plain", b'{"model": "x"}')


# --- Anthropic -------------------------------------------------------------------------------

def test_anthropic_request_translates_system_turns_stops_and_tools() -> None:
    chat = anthropic.to_chat({
        "model": "m", "max_tokens": 32, "system": [{"type": "text", "text": "Be brief."}],
        "stop_sequences": ["END"], "temperature": 0.2, "stream": True,
        "tools": [{"name": "get_time", "description": "now", "input_schema": {
            "type": "object", "properties": {"tz": {"type": "string"}}}}],
        "tool_choice": {"type": "any"},
        "messages": [
            {"role": "user", "content": "What time is it?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_time", "input": {"tz": "UTC"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "12:00"},
                {"type": "text", "text": "Thanks"}]}]})
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What time is it?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "toolu_1", "type": "function",
             "function": {"name": "get_time", "arguments": '{"tz": "UTC"}'}}]},
        {"role": "tool", "tool_call_id": "toolu_1", "content": "12:00"},
        {"role": "user", "content": "Thanks"}]
    assert chat["max_tokens"] == 32 and chat["stop"] == ["END"] and chat["temperature"] == 0.2
    assert chat["tool_choice"] == "required"
    assert chat["tools"][0]["function"]["parameters"]["properties"]["tz"]["type"] == "string"
    assert chat["stream"] and chat["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(("doc", "param"), [
    ({"model": "m", "messages": []}, "max_tokens"),
    ({"model": "m", "max_tokens": 0, "messages": []}, "max_tokens"),
    ({"max_tokens": 5, "messages": []}, "model"),
    ({"model": "m", "max_tokens": 5, "messages": "hi"}, "messages"),
    ({"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
     "messages.0.role"),
    ({"model": "m", "max_tokens": 5, "messages": [], "stop_sequences": "END"}, "stop_sequences"),
])
def test_anthropic_request_rejects_bad_shapes(doc: dict[str, Any], param: str) -> None:
    with pytest.raises(errors.ApiError) as info:
        anthropic.to_chat(doc)
    assert info.value.status == 400 and info.value.param == param
    assert anthropic.error_doc(400, info.value.message)["error"]["type"] == "invalid_request_error"


def test_anthropic_body_from_a_chat_completion_with_a_tool_call() -> None:
    chat = {"id": "chatcmpl-7", "model": FOLDER, "choices": [{"finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_time", "arguments": '{"tz":"UTC"}'}}]}}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 5}}
    ctype, body = AnthropicShaper(MODEL, "req_1").body(200, "application/json",
                                                       json.dumps(chat).encode())
    assert json.loads(body) == {
        "id": "msg_7", "type": "message", "role": "assistant", "model": MODEL,
        "content": [{"type": "tool_use", "id": "toolu_c1", "name": "get_time",
                     "input": {"tz": "UTC"}}],
        "stop_reason": "tool_use", "stop_sequence": None,
        "usage": {"input_tokens": 11, "output_tokens": 5}}


def test_anthropic_body_turns_an_upstream_error_into_its_shape() -> None:
    ctype, body = AnthropicShaper(MODEL, "r").body(
        400, "application/json", b'{"error":{"code":400,"message":"bad stop","type":"x"}}')
    assert json.loads(body) == {"type": "error", "error": {"type": "invalid_request_error",
                                                           "message": "bad stop"}}


def test_anthropic_stream_events_in_order_also_when_fed_byte_by_byte() -> None:
    whole = AnthropicShaper(MODEL, "r").stream()
    out = b"".join(whole.feed(c) for c in TEXT_STREAM) + whole.end()
    assert _feed_bytewise(AnthropicShaper(MODEL, "r").stream(), TEXT_STREAM) == out
    events = _events(out)
    assert [n for n, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_delta",
        "content_block_stop", "message_delta", "message_stop"]
    assert all(n == d["type"] for n, d in events)
    start = events[0][1]["message"]
    assert start["model"] == MODEL and start["id"] == "msg_42" and start["content"] == []
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == "Hello"
    assert events[5][1]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[5][1]["usage"] == {"input_tokens": 7, "output_tokens": 2}


def test_anthropic_stream_of_a_tool_call() -> None:
    chunks = [_chunk({"role": "assistant", "tool_calls": [{"index": 0, "id": "c9", "type":
              "function", "function": {"name": "get_time", "arguments": ""}}]}),
              _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"tz":'}}]}),
              _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"UTC"}'}}]}),
              _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    stream = AnthropicShaper(MODEL, "r").stream()
    events = _events(b"".join(stream.feed(c) for c in chunks) + stream.end())
    block = events[1][1]["content_block"]
    assert block == {"type": "tool_use", "id": "toolu_c9", "name": "get_time", "input": {}}
    partial = "".join(d["delta"]["partial_json"] for n, d in events
                      if n == "content_block_delta")
    assert json.loads(partial) == {"tz": "UTC"}
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_anthropic_stream_failure_is_an_error_event() -> None:
    stream = AnthropicShaper(MODEL, "r").stream()
    stream.feed(TEXT_STREAM[2])
    ((name, doc),) = _events(stream.fail("the host failed mid-stream"))
    assert name == "error" and doc["error"]["type"] == "api_error"
    assert stream.end() == b""  # no message_stop after an error


# --- Ollama ----------------------------------------------------------------------------------

def test_ollama_names_resolve_like_its_clients_write_them() -> None:
    assert ollama.name_candidates("gemma-3-270m") == ["gemma-3-270m"]
    assert ollama.name_candidates("gemma-3-270m:latest") == ["gemma-3-270m:latest",
                                                             "gemma-3-270m"]
    assert ollama.name_candidates("gemma-3-270m:q4_k_m") == ["gemma-3-270m:q4_k_m",
                                                             "gemma-3-270m-q4_k_m"]


def test_ollama_chat_request_maps_options_format_tools_and_history() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    chat = ollama.chat_request({
        "model": "m", "format": "json", "keep_alive": "5m", "tools": tools,
        "options": {"num_predict": 20, "temperature": 0, "stop": ["\n"], "num_ctx": 4096},
        "messages": [{"role": "user", "content": "hi", "images": ["QUJD"]},
                     {"role": "assistant", "content": "", "tool_calls": [
                         {"function": {"name": "f", "arguments": {"x": 1}}}]},
                     {"role": "tool", "content": "42", "tool_name": "f"}]})
    assert chat["max_tokens"] == 20 and chat["temperature"] == 0 and chat["stop"] == ["\n"]
    assert "num_ctx" not in chat and "keep_alive" not in chat
    assert chat["response_format"] == {"type": "json_object"} and chat["tools"] == tools
    assert chat["stream"] is True  # Ollama's default
    user, assistant, tool = chat["messages"]
    assert user["content"][1] == {"type": "image_url",
                                  "image_url": {"url": "data:image/png;base64,QUJD"}}
    assert assistant["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert tool == {"role": "tool", "content": "42",
                    "tool_call_id": assistant["tool_calls"][0]["id"]}


def test_ollama_generate_is_a_chat_unless_raw() -> None:
    path, body = ollama.generate_request({"model": "m", "prompt": "p", "system": "s",
                                          "stream": False})
    assert path == "/v1/chat/completions" and body["messages"] == [
        {"role": "system", "content": "s"}, {"role": "user", "content": "p"}]
    path, body = ollama.generate_request({"model": "m", "prompt": "p", "raw": True})
    assert path == "/v1/completions" and body["prompt"] == "p" and body["stream"] is True


@pytest.mark.parametrize("doc", [{"messages": []}, {"model": "", "messages": []},
                                 {"model": "m", "messages": "hi"},
                                 {"model": "m", "messages": [{"role": "bot", "content": "x"}]},
                                 {"model": "m", "messages": [], "stream": "no"}])
def test_ollama_chat_request_rejects_bad_shapes(doc: dict[str, Any]) -> None:
    with pytest.raises(errors.ApiError) as info:
        ollama.chat_request(doc)
    assert info.value.status == 400


def test_ollama_listings() -> None:
    entries = [{"id": "gemma-3-270m-q4_k_m", "key": "gemma-3-270m", "backend": "llama",
                "format": "gguf", "mode": "solo", "hosts": ["h1"], "ready": True},
               {"id": MODEL, "key": MODEL, "backend": "mlx", "format": "mlx", "hosts": [],
                "ready": False}]
    tags = ollama.tags(entries)["models"]
    assert [m["name"] for m in tags] == ["gemma-3-270m-q4_k_m:latest", f"{MODEL}:latest"]
    assert tags[0]["details"]["quantization_level"] == "Q4_K_M"
    assert len(tags[0]["digest"]) == 64
    (loaded,) = ollama.ps(entries)["models"]
    assert loaded["model"] == "gemma-3-270m-q4_k_m:latest" and loaded["hosts"] == ["h1"]
    assert ollama.show(entries[0])["capabilities"] == ["completion", "tools"]


# --- error shapes ----------------------------------------------------------------------------

def test_error_shapes_follow_the_dialect_of_the_path() -> None:
    err = errors.model_not_found("nope", ["a"])
    assert dialect_of("/v1/messages", {}) == "anthropic"
    assert dialect_of("/v1/models", {"anthropic-version": "2023-06-01"}) == "anthropic"
    assert dialect_of("/api/chat", {}) == "ollama"
    assert dialect_of("/api/status", {}) == "openai"
    assert dialect_of("/nope", {}, "ollama") == "ollama"
    assert error_body("anthropic", err) == {"type": "error", "error": {
        "type": "not_found_error", "message": err.message}}
    assert error_body("ollama", err) == {"error": err.message}
    assert error_body("openai", err)["error"]["code"] == "model_not_found"


class _Clock:
    """Wall and monotonic clocks the test moves by hand."""

    def __init__(self) -> None:
        self.wall, self.ns = 1_764_590_400.0, 1_000_000_000

    def mono_ns(self) -> int:
        return self.ns


def _ollama_shaper(kind: str = "chat") -> tuple[Any, _Clock]:
    from mesh_node.api.dialects.ollama_stream import OllamaShaper

    clock = _Clock()
    return OllamaShaper(f"{MODEL}:latest", kind, lambda: clock.wall,  # type: ignore[arg-type]
                        clock.mono_ns), clock


def test_ollama_stream_is_ndjson_ending_in_the_done_summary() -> None:
    shaper, clock = _ollama_shaper()
    stream = shaper.stream()
    timings = b',"timings":{"prompt_ms":12.5,"predicted_ms":40.0}'
    chunks = [*TEXT_STREAM[:5], TEXT_STREAM[5].replace(b"}}\n\n", b"}" + timings + b"}\n\n"),
              TEXT_STREAM[6]]
    out = b"".join(stream.feed(c) for c in chunks[:-1])
    clock.ns += 250_000_000
    out += stream.feed(chunks[-1]) + stream.end()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [d["message"]["content"] for d in lines[:-1]] == ["Hel", "lo"]
    assert all(d["model"] == f"{MODEL}:latest" and not d["done"] for d in lines[:-1])
    assert lines[0]["created_at"] == "2025-12-01T12:00:00Z"
    last = lines[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    assert last["message"] == {"role": "assistant", "content": ""}
    assert (last["prompt_eval_count"], last["eval_count"]) == (7, 2)
    assert last["total_duration"] == 250_000_000 and last["load_duration"] == 0
    assert (last["prompt_eval_duration"], last["eval_duration"]) == (12_500_000, 40_000_000)


def test_ollama_stream_tool_calls_come_whole_before_done() -> None:
    shaper, _ = _ollama_shaper()
    stream = shaper.stream()
    chunks = [_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {
                  "name": "get_time", "arguments": '{"tz":'}}]}),
              _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"UTC"}'}}]}),
              _chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    lines = [json.loads(line) for line in
             (b"".join(stream.feed(c) for c in chunks) + stream.end()).splitlines()]
    assert lines[0]["message"]["tool_calls"] == [{"function": {"name": "get_time",
                                                               "arguments": {"tz": "UTC"}}}]
    assert lines[1]["done"] and lines[1]["done_reason"] == "stop"


def test_ollama_generate_body_and_errors() -> None:
    shaper, _ = _ollama_shaper("generate")
    chat = {"choices": [{"message": {"content": "Hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    _, body = shaper.body(200, "application/json", json.dumps(chat).encode())
    doc = json.loads(body)
    assert doc["response"] == "Hi" and doc["done"] and doc["done_reason"] == "length"
    assert doc["model"] == f"{MODEL}:latest" and "message" not in doc
    _, body = shaper.body(500, "application/json", b'{"error":{"message":"boom"}}')
    assert json.loads(body) == {"error": "boom"}


def test_ollama_embed_answers_both_shapes() -> None:
    from mesh_node.api.dialects.ollama_stream import EmbedShaper

    up = json.dumps({"data": [{"embedding": [0.1, 0.2]}, {"embedding": [0.3, 0.4]}],
                     "usage": {"prompt_tokens": 5}}).encode()
    ticks = iter([0, 2_000])
    _, body = EmbedShaper("m:latest", False, lambda: next(ticks)).body(200, "application/json",
                                                                         up)
    assert json.loads(body) == {"model": "m:latest", "embeddings": [[0.1, 0.2], [0.3, 0.4]],
                                "total_duration": 2_000, "load_duration": 0,
                                "prompt_eval_count": 5}
    _, body = EmbedShaper("m:latest", True, lambda: 0).body(200, "application/json", up)
    assert json.loads(body) == {"embedding": [0.1, 0.2]}
    _, body = EmbedShaper("m", False, lambda: 0).body(
        501, "application/json", b'{"error":{"message":"This server does not support embeddings"}}')
    assert json.loads(body) == {"error": "This server does not support embeddings"}
    assert ollama.embed_request({"model": "m", "input": ["a", "b"]}, False)["input"] == ["a", "b"]
    with pytest.raises(errors.ApiError):
        ollama.embed_request({"model": "m", "prompt": 3}, True)
