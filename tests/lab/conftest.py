"""Lab fixtures: prerequisites checked loudly (root, ip, nft, curl), stale labs swept, and a
`lab_factory` whose labs are always closed (namespaces deleted, processes killed)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `import netlab` from any lab test

from netlab import Lab, LabError, ensure_prerequisites, sweep_stale  # noqa: E402

_LAB_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/lab carries the `lab` marker (so `-m lab` selects them)."""
    for item in items:
        if _LAB_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session", autouse=True)
def lab_prerequisites() -> None:
    """Fail (never skip) when the lab cannot run here; remove labs of crashed runs."""
    try:
        ensure_prerequisites()
    except LabError as exc:
        pytest.fail(f"lab prerequisites missing: {exc}", pytrace=False)
    sweep_stale()


@pytest.fixture
def lab_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Lab]]:
    """`lab_factory(n_hosts, **kw) -> Lab`; every lab made is closed at teardown.

    Logs go under pytest's tmp dir (kept for the last runs, for post-mortems).
    """
    labs: list[Lab] = []

    def make(n_hosts: int, **kw: Any) -> Lab:
        kw.setdefault("workdir", tmp_path_factory.mktemp("lab"))
        lab = Lab(n_hosts, **kw)
        labs.append(lab)
        return lab

    yield make
    for lab in labs:
        lab.close()
