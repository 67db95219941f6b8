"""[[models]] pins/replicas name their model by catalog id, so the election can match them."""

from __future__ import annotations

from pathlib import Path

from mesh_node.catalog.entry import CatalogEntry
from mesh_node.config.model import ModelConfig
from mesh_node.node.assembly import _model_ref


def _entry(path: Path) -> CatalogEntry:
    return CatalogEntry(id="gemma-3-270m-q4_k_m", path=path, format="gguf", backend="llama",
                        size_bytes=1, memory_bytes=1, quantization=None, key="gemma-3-270m")


def test_apilab_model_ref_is_the_catalog_id_of_the_configured_file(tmp_path: Path) -> None:
    f = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    f.write_bytes(b"x")
    link = tmp_path / "link.gguf"
    link.symlink_to(f)
    catalog = [_entry(f)]
    assert _model_ref(ModelConfig(path=f, replicas=2), catalog) == "gemma-3-270m-q4_k_m"
    assert _model_ref(ModelConfig(path=link, replicas=2), catalog) == "gemma-3-270m-q4_k_m"
    # not in the catalog (unreadable file): the alias, else the path, as before
    other = tmp_path / "missing.gguf"
    assert _model_ref(ModelConfig(path=other, alias="m", replicas=2), catalog) == "m"
    assert _model_ref(ModelConfig(path=other, replicas=2), catalog) == str(other)
