"""The official `openai` client for the demand lab, run inside a lab namespace
(`ip netns exec NS python THIS ...`); max_retries=0, so every answer is the mesh's own.

    python demand_client.py roundrobin BASE_URL N MAX_TOKENS   -> a JSON line per request
    python demand_client.py burst BASE_URL MODEL N MAX_TOKENS   -> a JSON line per request
    python demand_client.py seq BASE_URL MAX_TOKENS MODEL...    -> a JSON line per request

Each request streams, so a line carries its time to first token and to the end (seconds).
A burst sends all N at once (a thread each) and prints them as they end.
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
PROMPT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Count from one to twenty in words."}]


def _client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url + "/v1", api_key="lab", max_retries=0, timeout=300.0)


def one(client: openai.OpenAI, model: str, max_tokens: int) -> dict[str, Any]:
    """One streamed chat: status, served_by, ttft_s, total_s, text length."""
    start = time.monotonic()
    rec: dict[str, Any] = {"model": model}
    try:
        with client.chat.completions.with_streaming_response.create(
                model=model, messages=PROMPT, max_tokens=max_tokens, stream=True,
                temperature=0) as resp:
            rec |= {"status": resp.status_code, "served_by": resp.headers.get(SERVED_BY)}
            text = ""
            for c in resp.parse():
                if isinstance(c, ChatCompletionChunk) and c.choices:
                    piece = c.choices[0].delta.content or ""
                    if piece and "ttft_s" not in rec:
                        rec["ttft_s"] = round(time.monotonic() - start, 4)
                    text += piece
            rec["chars"] = len(text)
    except openai.APIStatusError as exc:
        rec |= {"status": exc.status_code, "error": str(exc)[:300]}
    except openai.APIError as exc:
        rec |= {"status": 0, "error": f"{type(exc).__name__}: {exc}"[:300]}
    rec["total_s"] = round(time.monotonic() - start, 4)
    return rec


def roundrobin(base_url: str, n: int, max_tokens: int) -> None:
    client = _client(base_url)
    models = sorted(m.id for m in client.models.list().data)
    for i in range(n):
        print(json.dumps({"i": i, **one(client, models[i % len(models)], max_tokens)}),
              flush=True)


def seq(base_url: str, max_tokens: int, models: list[str]) -> None:
    client = _client(base_url)
    for i, model in enumerate(models):
        print(json.dumps({"i": i, **one(client, model, max_tokens)}), flush=True)


def burst(base_url: str, model: str, n: int, max_tokens: int) -> None:
    client = _client(base_url)
    lock = threading.Lock()
    gate = threading.Barrier(n)

    def run(i: int) -> None:
        gate.wait()  # all at once
        rec = {"i": i, **one(client, model, max_tokens)}
        with lock:
            print(json.dumps(rec), flush=True)

    with ThreadPoolExecutor(max_workers=n) as pool:
        list(pool.map(run, range(n)))


if __name__ == "__main__":
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "roundrobin":
        roundrobin(url, int(sys.argv[3]), int(sys.argv[4]))
    elif mode == "seq":
        seq(url, int(sys.argv[3]), sys.argv[4:])
    elif mode == "burst":
        burst(url, sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    else:
        raise SystemExit(f"unknown mode {mode}")
