"""Fuzz the mDNS TXT decoder and the browse core: hostile adverts never raise, never pass checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh_node.discovery.core import BrowseCore, Dropped, Peer
from mesh_node.discovery.txt import TXT_PAIR_MAX, Advert, Malformed, decode_txt, encode_txt
from tests.support.hostile_fuzz import fuzz_settings

FZT_TESTS = 3  # the TXT target's long-run budget is split across these tests
FZT_DIGEST = "0123456789abcdef"
FZT_GOOD = encode_txt(Advert("node-good", "good", FZT_DIGEST, 1, 9338, 9337,
                             ("llama:split",), 1 << 30))
_KEYS = ["id", "n", "md", "pv", "gp", "ap", "cap", "mem"]
_text_or_bytes = st.text(max_size=300) | st.binary(max_size=300)
_props = st.dictionaries(st.sampled_from(_KEYS) | _text_or_bytes,
                         st.none() | _text_or_bytes, max_size=12)


def fzt_check(result: Advert | Malformed) -> None:
    """A decoded advert satisfies every invariant the decoder promises."""
    if isinstance(result, Malformed):
        assert result.reason
        return
    assert 1 <= len(result.node_id) <= 64 and result.node_id.isascii()
    assert not any(ch.isspace() for ch in result.node_id)
    assert len(result.mesh_digest) == 16 and set(result.mesh_digest) <= set("0123456789abcdef")
    assert 0 < result.gossip_port < 65536 and 0 < result.api_port < 65536
    assert result.protocol >= 0 and result.memory_offered >= 0
    assert all(":" in c and len(c) <= 65 and c.strip() == c for c in result.capabilities)


@fuzz_settings(400, FZT_TESTS)
@given(_props)
def test_fuzz_txt_random_properties(props: dict[bytes | str, bytes | str | None]) -> None:
    fzt_check(decode_txt(props))


@fuzz_settings(400, FZT_TESTS)
@given(st.sampled_from(_KEYS), st.none() | _text_or_bytes, st.booleans())
def test_fuzz_txt_one_bad_value_in_a_good_advert(key: str, value: bytes | str | None,
                                                 as_bytes: bool) -> None:
    props: dict[bytes | str, bytes | str | None] = {
        (k.encode() if as_bytes else k): (v.encode() if as_bytes else v)
        for k, v in FZT_GOOD.items()}
    props[key.encode() if as_bytes else key] = value
    result = decode_txt(props)
    fzt_check(result)
    raw = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    digits = raw is not None and raw.isascii() and raw.isdigit()
    # numbers come only from ASCII digits (never "٣", " 7" or "1e3")
    if isinstance(result, Advert) and key in ("gp", "ap", "pv"):
        assert digits
    if isinstance(result, Advert) and key == "mem" and not digits:
        assert result.memory_offered == 0


@fuzz_settings(400, FZT_TESTS)
@given(st.text(max_size=80), st.lists(st.text(max_size=40), max_size=3), _props,
       st.sampled_from([FZT_DIGEST, "fedcba9876543210"]))
def test_fuzz_txt_browse_core_counts_every_drop(instance: str, addresses: list[str],
                                                props: dict[bytes | str, bytes | str | None],
                                                digest: str) -> None:
    core = BrowseCore("self-node", FZT_DIGEST, 1)
    merged: dict[bytes | str, bytes | str | None] = {k: v for k, v in FZT_GOOD.items()}
    merged["md"] = digest
    merged.update(props)
    result = core.on_resolved(instance, addresses, merged)
    c = core.counters
    dropped = (c.dropped_malformed + c.dropped_foreign_mesh + c.dropped_protocol
               + c.dropped_no_address)
    assert c.adverts_seen == 1
    if isinstance(result, Dropped):
        assert dropped == 1
    else:
        assert dropped == 0
        if isinstance(result, Peer):
            assert result.mesh_digest == FZT_DIGEST and result.address in addresses


def test_fuzz_txt_pair_limit_holds_for_long_names() -> None:
    txt = encode_txt(Advert("n1", "é" * 400, FZT_DIGEST, 1, 1, 2, ("x:y",) * 200))
    assert all(len(k) + 1 + len(v.encode()) <= TXT_PAIR_MAX for k, v in txt.items())
    props: dict[bytes | str, bytes | str | None] = {k: v for k, v in txt.items()}
    assert isinstance(decode_txt(props), Advert)


@pytest.mark.parametrize("key,value", [
    ("md", FZT_DIGEST + "\n"), ("id", "node-good\n"), ("gp", "9338\n"), ("pv", "1\n"),
])  # found by the long run: regex "$" also matched before a trailing newline
def test_fuzz_txt_found_trailing_newline_is_malformed(key: str, value: str) -> None:
    props: dict[bytes | str, bytes | str | None] = {k: v for k, v in FZT_GOOD.items()}
    props[key] = value
    assert isinstance(decode_txt(props), Malformed)
