"""TXT record encode/decode: round trip, the 255-byte pair limit, tolerant decoding."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh_node import PROTOCOL_VERSION
from mesh_node.discovery.txt import (
    TXT_PAIR_MAX,
    Advert,
    Malformed,
    capability_tokens,
    decode_txt,
    encode_txt,
)
from mesh_node.records import BackendCapability
from mesh_node.security import derive_keys

DIGEST = derive_keys("s3cret", "home").mesh_digest


def _advert(**kw: object) -> Advert:
    base: dict[str, object] = dict(node_id="7f3a9c0e-node", name="studio", mesh_digest=DIGEST,
                                   protocol=PROTOCOL_VERSION, gossip_port=9338, api_port=9337,
                                   capabilities=("llama:split", "mlx:solo"),
                                   memory_offered=48 << 30)
    base.update(kw)
    return Advert(**base)  # type: ignore[arg-type]


def _wire(props: dict[str, str]) -> dict[bytes | str, bytes | str | None]:
    """As zeroconf hands them over: bytes keys and values."""
    return {k.encode(): v.encode() for k, v in props.items()}


def test_round_trip_through_bytes() -> None:
    adv = _advert()
    assert decode_txt(_wire(encode_txt(adv))) == adv


def test_txt_carries_digest_never_the_secret() -> None:
    txt = encode_txt(_advert())
    assert txt["md"] == DIGEST and len(DIGEST) == 16
    assert not any("s3cret" in v for v in txt.values())


def test_every_pair_fits_255_bytes_even_with_huge_inputs() -> None:
    caps = tuple(f"backend{i}:split" for i in range(60))
    txt = encode_txt(_advert(name="é" * 300, capabilities=caps, memory_offered=10**30))
    sizes = [len(k.encode()) + 1 + len(v.encode()) for k, v in txt.items()]
    assert max(sizes) <= TXT_PAIR_MAX
    decoded = decode_txt(_wire(txt))
    assert isinstance(decoded, Advert)
    assert decoded.capabilities == caps[: len(decoded.capabilities)]  # whole tokens, in order
    assert 10 < len(decoded.capabilities) < 60
    assert decoded.name == "é" * len(decoded.name) and len(decoded.name) > 100


def test_invalid_capability_tokens_are_not_advertised() -> None:
    txt = encode_txt(_advert(capabilities=("llama:split", "bad token", "x" * 40 + ":solo")))
    assert txt["cap"] == "llama:split"


def test_capability_tokens_from_records() -> None:
    caps = (BackendCapability("llama", "b1", ("gguf",), True, True),
            BackendCapability("mlx", "0.2", ("mlx",), False, True),
            BackendCapability("other", "1", (), True, False))
    assert capability_tokens(caps) == ("llama:split", "mlx:solo")


def test_decode_drops_bad_adverts_with_a_reason() -> None:
    good = encode_txt(_advert())
    cases = {
        "bad node id": {**good, "id": ""},
        "bad mesh digest": {**good, "md": "xyz"},
        "bad port": {**good, "gp": "70000"},
        "bad protocol version": {**good, "pv": "one"},
    }
    for reason, props in cases.items():
        res = decode_txt(_wire(props))
        assert isinstance(res, Malformed) and res.reason == reason
    missing = dict(good)
    del missing["ap"]
    assert isinstance(decode_txt(_wire(missing)), Malformed)


def test_decode_is_tolerant_of_odd_values() -> None:
    good = _wire(encode_txt(_advert()))
    odd: dict[bytes | str, bytes | str | None] = {**good, b"mem": b"\xff\xfe", b"cap": None,
                                                  b"future": b"whatever", b"gp": "٣٣"}
    assert isinstance(decode_txt(odd), Malformed)  # Arabic-Indic digits are not a port
    odd[b"gp"] = b"9338"
    res = decode_txt(odd)
    assert isinstance(res, Advert)
    assert res.memory_offered == 0 and res.capabilities == ()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.one_of(st.binary(max_size=8), st.sampled_from([b"id", b"md", b"gp"])),
                       st.one_of(st.none(), st.binary(max_size=40), st.text(max_size=20))))
def test_decode_never_raises(props: dict[bytes, bytes | str | None]) -> None:
    assert isinstance(decode_txt(props), Advert | Malformed)  # type: ignore[arg-type]
