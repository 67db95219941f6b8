"""The node id: a uuid4 hex made once per data_dir and kept, so restarts keep their identity."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from mesh_node.config.errors import ConfigError

NODE_ID_FILE = "node_id"
_ID = re.compile(r"[0-9a-f]{32}")


def load_or_create_node_id(data_dir: Path) -> str:
    """Return data_dir/node_id, creating it (uuid4 hex, mode 0600) on first use."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / NODE_ID_FILE
    existing = _read(path)
    if existing is not None:
        return existing
    tmp = data_dir / f".{NODE_ID_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(uuid.uuid4().hex + "\n")
            f.flush()
            os.fsync(f.fileno())
        # link() fails if the name exists: two nodes starting at once on one data_dir agree on
        # whichever id landed first, and a crash never leaves a half-written id behind.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    result = _read(path)
    assert result is not None
    return result


def _read(path: Path) -> str | None:
    try:
        text = path.read_text("ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), None, "a readable node id file",
                          message=f"cannot read the node id: {e}") from None
    if not _ID.fullmatch(text):
        # Refuse rather than replace: a silently new id would look like a new node to the mesh
        # while the old one lingers as a dead member.
        raise ConfigError(str(path), None, "32 lowercase hex digits",
                          message="not a node id (32 lowercase hex digits); delete the file "
                                  "to make a new one")
    return text
