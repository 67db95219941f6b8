"""The official anthropic, ollama and openai clients against one node, for every model named
(run inside a lab namespace: `ip netns exec NS python THIS BASE_URL KEY MODEL...`).

Prints one JSON object: per model and dialect, the whole and the streamed answer (text, model
names seen, chunk count), plus listings and the errors the clients raised for an unknown
model, a bad request and a wrong key. Clients are unchanged but for their base URL and key;
max_retries=0 so every answer seen is the mesh's.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import anthropic
import ollama
import openai

PROMPT = "Say hello in three words."
TOKENS = 8


def _err(call: Callable[[], object]) -> dict[str, Any]:
    """The status code and class of the error `call` raises (or "no error")."""
    try:
        call()
    except (anthropic.APIStatusError, openai.APIStatusError) as exc:
        return {"status": exc.status_code, "class": type(exc).__name__,
                "body": exc.body if isinstance(exc.body, dict) else str(exc.body)}
    except ollama.ResponseError as exc:
        return {"status": exc.status_code, "class": type(exc).__name__, "body": exc.error}
    return {"status": None, "class": "no error"}


def _anthropic(c: anthropic.Anthropic, model: str) -> dict[str, Any]:
    msg = c.messages.create(model=model, max_tokens=TOKENS, system="You are brief.",
                            messages=[{"role": "user", "content": PROMPT}])
    texts, models, events = [], set(), []
    with c.messages.stream(model=model, max_tokens=TOKENS,
                           messages=[{"role": "user", "content": PROMPT}]) as s:
        for ev in s:
            events.append(ev.type)
            if ev.type == "message_start":
                models.add(ev.message.model)
            elif ev.type == "content_block_delta" and ev.delta.type == "text_delta":
                texts.append(ev.delta.text)
        final = s.get_final_message()
    return {"text": "".join(b.text for b in msg.content if b.type == "text"),
            "model": msg.model, "stop_reason": msg.stop_reason,
            "output_tokens": msg.usage.output_tokens, "stream_text": "".join(texts),
            "stream_models": sorted(models | {final.model}), "stream_events": events,
            "stream_output_tokens": final.usage.output_tokens}


def _ollama(c: ollama.Client, model: str) -> dict[str, Any]:
    msgs = [{"role": "user", "content": PROMPT}]
    whole = c.chat(model=model, messages=msgs, options={"num_predict": TOKENS})
    parts = list(c.chat(model=model, messages=msgs, options={"num_predict": TOKENS},
                        stream=True))
    gen = c.generate(model=model, prompt=PROMPT, options={"num_predict": TOKENS})
    return {"text": whole.message.content, "model": whole.model, "done": whole.done,
            "eval_count": whole.eval_count, "generate_text": gen.response,
            "stream_text": "".join(p.message.content or "" for p in parts),
            "stream_models": sorted({p.model for p in parts}), "stream_chunks": len(parts),
            "stream_last_done": parts[-1].done, "stream_eval_count": parts[-1].eval_count}


def _openai(c: openai.OpenAI, model: str) -> dict[str, Any]:
    msgs: list[Any] = [{"role": "user", "content": PROMPT}]
    whole = c.chat.completions.create(model=model, messages=msgs, max_tokens=TOKENS)
    parts = list(c.chat.completions.create(model=model, messages=msgs, max_tokens=TOKENS,
                                           stream=True))
    return {"text": whole.choices[0].message.content, "model": whole.model,
            "stream_text": "".join(p.choices[0].delta.content or "" for p in parts
                                   if p.choices),
            "stream_models": sorted({p.model for p in parts}), "stream_chunks": len(parts)}


TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}},
               "required": ["city"]}


def _tools(a: anthropic.Anthropic, oa: openai.OpenAI, model: str) -> dict[str, Any]:
    """A tools request in both dialects that have them: a tool call or a message, not 500."""
    ask = "What is the weather in Paris? Use the tool."
    chat = oa.chat.completions.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": ask}],
        tools=[{"type": "function", "function": {"name": "get_weather",
                                                 "description": "Weather of a city",
                                                 "parameters": TOOL_SCHEMA}}])
    choice = chat.choices[0]
    msg = a.messages.create(model=model, max_tokens=64,
                            messages=[{"role": "user", "content": ask}],
                            tools=[{"name": "get_weather", "description": "Weather of a city",
                                    "input_schema": TOOL_SCHEMA}])  # type: ignore[list-item]
    return {"openai_finish": choice.finish_reason,
            "openai_calls": [c.function.name for c in choice.message.tool_calls or []
                             if c.type == "function"],
            "openai_text": choice.message.content,
            "anthropic_stop": msg.stop_reason,
            "anthropic_blocks": [b.type for b in msg.content]}


def main(base_url: str, key: str, models: list[str]) -> dict[str, Any]:
    a = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=120.0)
    o = ollama.Client(host=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120.0)
    oa = openai.OpenAI(base_url=base_url + "/v1", api_key=key, max_retries=0, timeout=120.0)
    out: dict[str, Any] = {
        "anthropic_models": [m.id for m in a.models.list()],
        "ollama_tags": [m.model for m in o.list().models],
        "ollama_ps": [m.model for m in o.ps().models],
        "openai_models": [m.id for m in oa.models.list()],
        "answers": {m: {"anthropic": _anthropic(a, m), "ollama": _ollama(o, m),
                        "openai": _openai(oa, m)} for m in models},
    }
    out["tools"] = _tools(a, oa, models[0])
    wrong_a = anthropic.Anthropic(base_url=base_url, api_key="wrong", max_retries=0)
    wrong_o = ollama.Client(host=base_url, headers={"Authorization": "Bearer wrong"})
    wrong_oa = openai.OpenAI(base_url=base_url + "/v1", api_key="wrong", max_retries=0)
    user = [{"role": "user", "content": PROMPT}]
    out["errors"] = {
        "anthropic": {
            "unknown": _err(lambda: a.messages.create(model="no-such-model", max_tokens=4,
                                                      messages=user)),  # type: ignore[arg-type]
            "bad": _err(lambda: a.messages.create(model=models[0], max_tokens=0,
                                                  messages=user)),  # type: ignore[arg-type]
            "key": _err(lambda: wrong_a.messages.create(model=models[0], max_tokens=4,
                                                        messages=user))},  # type: ignore[arg-type]
        "ollama": {
            "unknown": _err(lambda: o.chat(model="no-such-model", messages=user)),
            "bad": _err(lambda: o.chat(model=models[0], messages=[{"role": "bot"}])),
            "key": _err(lambda: wrong_o.chat(model=models[0], messages=user))},
        "openai": {
            "unknown": _err(lambda: oa.chat.completions.create(model="no-such-model",
                                                               messages=user)),  # type: ignore[arg-type]
            "bad": _err(lambda: oa.chat.completions.create(model=models[0],
                                                           messages="hi")),  # type: ignore[arg-type]
            "key": _err(lambda: wrong_oa.chat.completions.create(
                model=models[0], messages=user))},  # type: ignore[arg-type]
    }
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2], sys.argv[3:])), flush=True)
