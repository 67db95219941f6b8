"""Value kinds of the config schema: each checks a TOML value, and parses the same from text.

A kind's `check` takes what tomllib produced and returns the typed value or raises `Invalid`.
Text (environment variables, command-line flags) first goes through `parse_text`, which is
best-effort: text it cannot parse is passed on unchanged, so `check` reports it the same way
it reports a bad TOML value ("expected an integer ..., got \"abc\"").
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class Invalid(ValueError):
    """A value does not fit its kind; `expected` says what would have."""

    def __init__(self, expected: str, got: object) -> None:
        super().__init__(expected)
        self.expected = expected
        self.got = got


def show(value: object) -> str:
    """Render a bad value for an error message: strings quoted, tables named."""
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | list | int | float):
        return json.dumps(value)
    return repr(value)


def _identity(text: str) -> object:
    return text


@dataclass(frozen=True)
class Kind:
    expected: str
    check: Callable[[object], object]
    parse_text: Callable[[str], object] = _identity
    is_path: bool = False


def integer(lo: int, hi: int | None = None) -> Kind:
    """An integer in [lo, hi] (TOML booleans are not integers here)."""
    expected = f"an integer from {lo} to {hi}" if hi is not None else f"an integer >= {lo}"

    def check(v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
            raise Invalid(expected, v)
        return v

    def parse(text: str) -> object:
        try:
            return int(text.strip())
        except ValueError:
            return text

    return Kind(expected, check, parse)


PORT = integer(1, 65535)


def number(lo: float, *, inclusive: bool = True) -> Kind:
    """A float (TOML integers accepted) at least / above lo."""
    expected = f"a number {'>=' if inclusive else '>'} {lo}"

    def check(v: object) -> object:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise Invalid(expected, v)
        try:
            x = float(v)
        except OverflowError:  # an integer of hundreds of digits
            raise Invalid(expected, v) from None
        if not math.isfinite(x) or x < lo or (not inclusive and x == lo):
            raise Invalid(expected, v)  # TOML and float() both take nan and inf
        return x

    def parse(text: str) -> object:
        try:
            return float(text.strip())
        except ValueError:
            return text

    return Kind(expected, check, parse)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _check_bool(v: object) -> object:
    if not isinstance(v, bool):
        raise Invalid("true or false", v)
    return v


def _parse_bool(text: str) -> object:
    low = text.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else text


BOOL = Kind("true or false", _check_bool, _parse_bool)


def string(pattern: str | None = None, expected: str = "a non-empty string") -> Kind:
    """A non-empty string, optionally matching a full regex."""
    rx = re.compile(pattern) if pattern else None

    def check(v: object) -> object:
        if not isinstance(v, str) or not v.strip() or (rx and not rx.fullmatch(v)):
            raise Invalid(expected, v)
        return v

    return Kind(expected, check)


def choice(*options: str) -> Kind:
    """One of a few words (case-insensitive, stored lower-case)."""
    expected = "one of " + ", ".join(f'"{o}"' for o in options)

    def check(v: object) -> object:
        if not isinstance(v, str) or v.lower() not in options:
            raise Invalid(expected, v)
        return v.lower()

    return Kind(expected, check)


def _check_path(v: object) -> object:
    if not isinstance(v, str) or not v.strip() or "\x00" in v:  # NUL: no OS takes it
        raise Invalid("a path", v)
    try:
        return Path(v).expanduser()
    except RuntimeError:  # "~nosuchuser/...": no home directory to expand to
        raise Invalid("a path (with ~ only for a known user)", v) from None


PATH = Kind("a path", _check_path, is_path=True)


def _split_list(text: str) -> object:
    return [part.strip() for part in text.split(",") if part.strip()]


def str_list(item: Kind, expected: str) -> Kind:
    """A list whose every item fits `item`; from text, comma-separated."""

    def check(v: object) -> object:
        if not isinstance(v, list):
            raise Invalid(expected, v)
        out = []
        for x in v:
            try:
                out.append(item.check(x))
            except Invalid as e:
                raise Invalid(expected, x) from e
        return tuple(out)

    return Kind(expected, check, _split_list, is_path=item.is_path)


_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_PEER = "a peer address \"host:port\" with a port from 1 to 65535"


def _check_peer(v: object) -> object:
    """"host:port", "1.2.3.4:9338" or "[fe80::1]:9338"."""
    if not isinstance(v, str):
        raise Invalid(_PEER, v)
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", v.strip())
    if not m:
        raise Invalid(_PEER, v)
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 1 <= int(port) <= 65535:
        raise Invalid(_PEER, v)
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        if m.group(1) or not _HOSTNAME.fullmatch(host):
            raise Invalid(_PEER, v) from None
    return v.strip()


PEER = Kind(_PEER, _check_peer)

# Decimal units are powers of 1000, binary ones of 1024 (IEC 80000-13), so "8GB" != "8GiB".
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = "a positive size in bytes: an integer or a string like \"8GiB\" or \"512MB\""


def _check_size(v: object) -> object:
    if isinstance(v, int) and not isinstance(v, bool):
        if v > 0:
            return v
        raise Invalid(_SIZE, v)
    if isinstance(v, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", v)
        if m and m.group(2).lower() in _UNITS:
            x = float(m.group(1)) * _UNITS[m.group(2).lower()]
            n = int(x) if x < 2**63 else 0  # float("9" * 400) is inf: int() of it raises
            if n > 0:
                return n
    raise Invalid(_SIZE, v)


SIZE = Kind(_SIZE, _check_size)


_DURATION = ("a duration: seconds as a number, or a string like \"15m\", \"90s\", \"1h30m\" "
             "(0 or more)")
_DURATION_RX = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")
_MAX_DURATION = 1 << 32  # seconds: ~136 years, inside the gossip bound


def parse_duration(v: object) -> float | None:
    """Seconds for a number or an "1h30m"-style string; None when it is neither (or < 0)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int) and abs(v) > _MAX_DURATION:
        return None  # float() of a 400-digit TOML integer overflows
    if isinstance(v, int | float):
        x = float(v)
    elif isinstance(v, str) and v.strip():
        text = v.strip().lower()
        try:
            x = float(text)
        except ValueError:
            m = _DURATION_RX.fullmatch(text)
            if m is None or not any(m.groups()):
                return None
            h, mi, sec = (float(g) if g else 0.0 for g in m.groups())
            x = h * 3600 + mi * 60 + sec
    else:
        return None
    return x if math.isfinite(x) and 0 <= x <= _MAX_DURATION else None


def _check_duration(v: object) -> object:
    x = parse_duration(v)
    if x is None:
        raise Invalid(_DURATION, v)
    return x


DURATION = Kind(_DURATION, _check_duration)
