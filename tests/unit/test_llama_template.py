"""The shipped Gemma chat template: Gemma's turn format, system text and tools in the first
turn, tool calls and results in Hermes-style tags (what llama-server parses tool calls from)."""

from __future__ import annotations

import json

import jinja2
import jinja2.sandbox

from mesh_node.backends import llama

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {}}}


def _render(**kw: object) -> str:
    # as Hugging Face renders chat templates (and llama.cpp's minja mimics): tojson unescaped
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = json.dumps
    text = llama.template_path("gemma3").read_text(encoding="utf-8")
    return env.from_string(text).render(bos_token="<bos>", add_generation_prompt=True, **kw)


def test_llama_template_shipped_for_gemma_architectures() -> None:
    assert {llama.TEMPLATES[a] for a in ("gemma", "gemma2", "gemma3")} == {"gemma.jinja"}
    assert llama.template_path("gemma").is_file()


def test_llama_template_plain_chat_is_gemmas_format() -> None:
    out = _render(messages=[{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hi"},
                            {"role": "assistant", "content": "Hello."},
                            {"role": "user", "content": [{"type": "text", "text": "Again"}]}])
    assert out == ("<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                   "<start_of_turn>model\nHello.<end_of_turn>\n"
                   "<start_of_turn>user\nAgain<end_of_turn>\n<start_of_turn>model\n")


def test_llama_template_renders_tools_calls_and_results() -> None:
    call = {"id": "c1", "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
    out = _render(tools=[TOOL], messages=[
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "Sunny"}])
    first = out.split("<end_of_turn>")[0]
    assert "<tools>\n" + json.dumps(TOOL) in first and first.endswith("Weather?")
    assert ('<start_of_turn>model\n<tool_call>\n{"name": "get_weather", "arguments": '
            '{"city": "Paris"}}\n</tool_call><end_of_turn>') in out
    assert "<start_of_turn>user\n<tool_response>\nSunny\n</tool_response><end_of_turn>" in out
