"""Demand lab helpers: distinct copies of the demo GGUF, a llama-server process sampler, the
official-client driver, and percentile figures (issue 13)."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from netlab import Lab

CLIENT = Path(__file__).resolve().parents[1] / "support" / "demand_client.py"
_NAME = b"Gemma 3 270m"  # the demo file's general.name (GGUF metadata string)


def distinct_ggufs(src: Path, folder: Path, n: int) -> list[Path]:
    """n copies of `src` that differ in content: general.name rewritten in place (same length,
    so no offset moves), "Gemma 3 270a", "...b", ...; named demand-a.gguf, demand-b.gguf, ..."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        letter = chr(ord("a") + k)
        dest = folder / f"demand-{letter}.gguf"
        if not dest.exists():
            tmp = dest.with_suffix(".part")
            shutil.copyfile(src, tmp)
            with tmp.open("r+b") as f:
                head = f.read(4096)
                at = head.find(_NAME)
                if at < 0:
                    raise ValueError(f"{src}: no general.name {_NAME!r} in the header")
                f.seek(at)
                f.write(_NAME[:-1] + letter.encode())
            tmp.replace(dest)
        out.append(dest)
    return out


class ProcSampler:
    """Counts `llama-server` processes in a namespace every `every` seconds, in a thread."""

    def __init__(self, ns: str, every: float = 0.1) -> None:
        self.ns, self.every = ns, every
        self.max_seen = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def count(self) -> int:
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True,
                              timeout=10).stdout.split()
        n = 0
        for pid in pids:
            try:
                argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            n += argv0.endswith(b"llama-server")
        return n

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.max_seen = max(self.max_seen, self.count())
            self.samples += 1

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def run_client(lab: Lab, k: int, *args: str, timeout: float = 600.0) -> list[dict[str, Any]]:
    """The official-client driver inside host k's namespace; its JSON lines."""
    argv = ["ip", "netns", "exec", lab.host(k).ns, sys.executable, str(CLIENT), *args]
    cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if cp.returncode != 0:
        raise AssertionError(f"client failed ({cp.returncode}): {cp.stderr[-2000:]}")
    return [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]


def p50(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")
