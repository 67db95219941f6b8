"""The official `openai` client, run inside a lab namespace (`ip netns exec NS python THIS ...`).

    python apilab_client.py basic BASE_URL           -> one JSON object on stdout
    python apilab_client.py burst BASE_URL N CONC    -> one JSON line per finished request

The client is unchanged but for base_url; max_retries=0 so any failover seen is the mesh's,
never the client's own retry.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

SERVED_BY = "x-mesh-served-by"
PROMPT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello in three words."}]


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="lab", max_retries=0, timeout=120.0)


def basic(base_url: str) -> dict[str, Any]:
    """List models, complete a chat, stream a chat; report what the mesh answered."""
    client = _client(base_url)
    models = [m.id for m in client.models.list().data]
    model = models[0]
    raw = client.chat.completions.with_raw_response.create(model=model, messages=PROMPT,
                                                           max_tokens=12)
    chat = raw.parse()
    with client.chat.completions.with_streaming_response.create(
            model=model, messages=PROMPT, max_tokens=12, stream=True) as resp:
        stream_served_by = resp.headers.get(SERVED_BY)
        pieces = [c.choices[0].delta.content or "" for c in resp.parse()
                  if isinstance(c, ChatCompletionChunk) and c.choices]
    return {"models": models, "chat_text": chat.choices[0].message.content,
            "chat_served_by": raw.headers.get(SERVED_BY), "stream_chunks": len(pieces),
            "stream_text": "".join(pieces), "stream_served_by": stream_served_by}


def burst(base_url: str, n: int, conc: int) -> None:
    """N non-streamed chats, CONC at a time; a JSON line per request as it ends."""
    client = _client(base_url)
    model = client.models.list().data[0].id
    lock = threading.Lock()

    def one(i: int) -> None:
        start = time.monotonic()
        rec: dict[str, Any] = {"i": i}
        try:
            raw = client.chat.completions.with_raw_response.create(
                model=model, messages=PROMPT, max_tokens=16)
            rec |= {"ok": True, "served_by": raw.headers.get(SERVED_BY),
                    "text": raw.parse().choices[0].message.content}
        except openai.OpenAIError as exc:
            rec |= {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        rec["seconds"] = round(time.monotonic() - start, 3)
        with lock:
            print(json.dumps(rec), flush=True)

    with ThreadPoolExecutor(conc) as pool:
        list(pool.map(one, range(n)))


def main(argv: list[str]) -> None:
    if argv[0] == "basic":
        print(json.dumps(basic(argv[1])), flush=True)
    elif argv[0] == "burst":
        burst(argv[1], int(argv[2]), int(argv[3]))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
