"""Bench statistics (pure): per-request rates, batch rates, level averages; SSE tallying."""

from __future__ import annotations

import json

import pytest

from mesh_node.bench.sse import StreamTally
from mesh_node.bench.stats import (
    BatchSample,
    RequestSample,
    batch_tps,
    decode_tps,
    overall_tps,
    summarize,
)


def test_bench_decode_tps_counts_tokens_after_the_first() -> None:
    r = RequestSample(total=2.0, ttft=0.5, tokens=31)
    assert decode_tps(r) == pytest.approx(30 / 1.5)
    assert overall_tps(r) == pytest.approx(31 / 2.0)


@pytest.mark.parametrize("sample", [
    RequestSample(total=1.0, ttft=0.5, tokens=1),  # one token: nothing after the first
    RequestSample(total=0.5, ttft=0.5, tokens=4),  # all tokens at once: no time after first
    RequestSample(total=1.0, ttft=None, tokens=0),  # nothing came
    RequestSample(total=1.0, ttft=0.2, tokens=5, error="HTTP 500"),
])
def test_bench_decode_tps_undefined_cases(sample: RequestSample) -> None:
    assert decode_tps(sample) is None


def test_bench_batch_tps_is_all_ok_tokens_over_wall() -> None:
    b = BatchSample(4, 2.0, (RequestSample(1.0, 0.1, 10), RequestSample(2.0, 0.1, 30),
                             RequestSample(2.0, None, 0, error="timeout")))
    assert batch_tps(b) == pytest.approx(40 / 2.0)
    assert batch_tps(BatchSample(1, 1.0, (RequestSample(1.0, None, 0, "x"),))) is None


def test_bench_summarize_averages_over_successes_and_counts_errors() -> None:
    b1 = BatchSample(2, 2.0, (RequestSample(2.0, 0.5, 16), RequestSample(1.0, 0.2, 9)))
    b2 = BatchSample(2, 4.0, (RequestSample(4.0, 1.0, 31), RequestSample(4.0, None, 0, "boom")))
    lv = summarize(2, [b1, b2])
    assert (lv.concurrency, lv.batches, lv.requests, lv.errors) == (2, 2, 3, 1)
    assert lv.avg_ttft == pytest.approx((0.5 + 0.2 + 1.0) / 3)
    assert lv.avg_total == pytest.approx((2.0 + 1.0 + 4.0) / 3)
    assert lv.avg_batch_wall == pytest.approx(3.0)
    assert lv.avg_decode_tps == pytest.approx((15 / 1.5 + 8 / 0.8 + 30 / 3.0) / 3)
    assert lv.avg_overall_tps == pytest.approx((16 / 2 + 9 / 1 + 31 / 4) / 3)
    assert lv.avg_batch_tps == pytest.approx((25 / 2.0 + 31 / 4.0) / 2)
    assert lv.avg_tokens == pytest.approx(56 / 3)


def test_bench_summarize_all_failed_has_no_averages() -> None:
    lv = summarize(1, [BatchSample(1, 1.0, (RequestSample(1.0, None, 0, "refused"),))])
    assert lv.requests == 0 and lv.errors == 1
    assert lv.avg_ttft is None and lv.avg_decode_tps is None and lv.avg_batch_tps is None


def _data(obj: object) -> str:
    return "data: " + json.dumps(obj)


def _delta(text: str | None) -> str:
    return _data({"choices": [{"index": 0, "delta": {"content": text}}]})


def test_bench_sse_first_token_is_first_nonempty_content() -> None:
    t = StreamTally()
    t.feed(": keepalive 1/1", 0.05)  # mlx_lm.server comment line
    t.feed(_data({"choices": [{"delta": {"role": "assistant", "content": None}}]}), 0.1)
    t.feed("", 0.1)
    t.feed(_delta("Hello"), 0.3)
    t.feed(_delta(" world"), 0.4)
    t.feed(_data({"choices": [{"delta": {}, "finish_reason": "length"}]}), 0.5)
    assert t.first_token_at == 0.3 and t.deltas == 2 and t.tokens == 2 and not t.done
    t.feed("data: [DONE]", 0.6)
    assert t.done and t.error is None


def test_bench_sse_prefers_server_usage() -> None:
    t = StreamTally()
    t.feed(_delta("a"), 0.1)
    t.feed(_data({"choices": [], "usage": {"completion_tokens": 7, "prompt_tokens": 3}}), 0.2)
    assert t.deltas == 1 and t.tokens == 7


def test_bench_sse_reports_errors() -> None:
    t = StreamTally()
    t.feed(_data({"error": {"message": "model not found", "type": "x"}}), 0.1)
    assert t.error == "model not found"
    bad = StreamTally()
    bad.feed("data: {not json", 0.1)
    assert bad.error is not None and "bad JSON" in bad.error


def test_bench_sse_counts_completions_text_chunks() -> None:
    t = StreamTally()
    t.feed(_data({"choices": [{"text": "x"}]}), 0.2)
    assert t.tokens == 1 and t.first_token_at == 0.2
