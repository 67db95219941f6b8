"""The one error a bad configuration raises, naming where, which key, and what was expected."""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration problem: `file` (or "environment"/"command line"), dotted `key`, `expected`.

    str() reads `configs/x.toml: api.port: expected an integer from 1 to 65535, got 70000`.
    `key` is None when the problem is the whole file (missing, not TOML).
    """

    def __init__(self, file: str, key: str | None, expected: str, got: str | None = None,
                 message: str | None = None) -> None:
        self.file = file
        self.key = key
        self.expected = expected
        self.got = got
        self.message = message or (f"expected {expected}, got {got}" if got is not None
                                   else f"expected {expected}")
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        return f"{where}: {self.message}"
