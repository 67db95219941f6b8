"""The dashboard page, rendered by headless chromium against a fake node.

No --virtual-time-budget: virtual time only advances while the network is idle, and the
page's EventSource never is, so chromium would wait forever. The page inlines the status
document instead, and --dump-dom shows the DOM after its scripts ran at load.
"""

from __future__ import annotations

from pathlib import Path

from mesh_node.api.app import build_app, inline_status
from mesh_node.timing import Timings
from tests.support.api_chromium import chromium, dashboard_context
from tests.support.api_servers import api_serving


async def test_status_dashboard_renders_members_and_placement(tmp_path: Path) -> None:
    ctx = dashboard_context()
    async with api_serving(build_app(ctx, Timings())) as url:
        dom = await chromium(url + "/", tmp_path / "profile", "--dump-dom")
    for name in ("studio", "laptop", "old-pc"):
        assert f"<b>{name}</b>" in dom
    assert "solo on studio: 12.0 GiB free &gt;= 1.1 x 0.4 GB" in dom
    assert "split: no node has 6.6 GB alone; studio + laptop by memory" in dom
    assert "mlx: not a Mac and mlx not installed" in dom
    assert "no mesh secret" in dom  # the open-mesh warning banner
    assert ">suspect<" in dom and "loading…" not in dom


def test_status_dashboard_inline_cannot_break_out_of_script() -> None:
    page = '<script id="initial-status" type="application/json">null</script>'
    out = inline_status(page, {"members": [{"name": "</script><script>alert(1)"}]})
    assert out.count("</script>") == 1 and "<\\/script>" in out
