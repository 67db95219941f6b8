"""Every config key, as a dotted name with its kind: the single table the loader validates against."""

from __future__ import annotations

import difflib

from mesh_node.config import kinds as k

_NAME = k.string(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}",
                 "a name of 1-63 letters, digits, '.', '_' or '-'")

FIELDS: dict[str, k.Kind] = {
    "node.name": _NAME,
    "node.data_dir": k.PATH,
    "node.memory_bytes": k.SIZE,
    "node.advertise_address": k.string(),
    "node.interfaces": k.str_list(k.string(), "a list of interface names"),
    "node.model_store": k.PATH,
    "node.max_store_bytes": k.SIZE,
    "node.share_models": k.BOOL,
    "mesh.name": _NAME,
    "mesh.secret": k.string(expected="a non-empty secret string"),
    "mesh.secret_file": k.PATH,
    "mesh.peers": k.str_list(k.PEER, "a list of peer addresses \"host:port\" (port 1-65535)"),
    "mesh.mdns": k.BOOL,
    "mesh.gossip_port": k.PORT,
    "api.host": k.string(),
    "api.port": k.PORT,
    "api.api_key": k.string(expected="a non-empty API key"),
    "api.max_body_bytes": k.SIZE,
    "api.ollama_port": k.PORT,
    "api.tls_cert": k.PATH,
    "api.tls_key": k.PATH,
    "api.tls_port": k.PORT,
    "backends.llama.server_bin": k.PATH,
    "backends.llama.rpc_bin": k.PATH,
    "backends.llama.threads": k.integer(1, 1024),
    "backends.llama.extra_args": k.str_list(k.string(), "a list of strings"),
    "backends.llama.ctx_size": k.integer(128, 1 << 24),
    "backends.llama.rpc_port": k.PORT,
    "backends.mlx.server_bin": k.PATH,
    "backends.mlx.python": k.PATH,
    "model_dirs": k.str_list(k.PATH, "a list of folder paths"),
    "demo_model": k.BOOL,
    "scan_hf_cache": k.BOOL,
    "election.headroom": k.number(1.0),
    "election.max_rtt_ms": k.number(0.0, inclusive=False),
    "election.idle_unload": k.DURATION,
    "election.load_timeout": k.DURATION,
    "election.max_replicas": k.integer(1, 64),
    "log.level": k.choice("debug", "info", "warning", "error"),
    "log.format": k.choice("auto", "console", "json"),
}

MODEL_FIELDS: dict[str, k.Kind] = {
    "path": k.PATH,
    "alias": k.string(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}",
                      "an alias of letters, digits and . _ : / -"),
    "replicas": k.integer(1, 64),
    "pin": k.string(expected="a node name or id"),
    "preload": k.BOOL,
    "idle_unload": k.DURATION,
}

# Tables that hold keys rather than being one; "models" is the array of tables.
SECTIONS = frozenset({"node", "mesh", "api", "backends", "backends.llama", "backends.mlx",
                      "election", "log"})

# Paths that resolve against the folder of the file that set them. Binary paths are not
# here: a bare "llama-server" means "look it up on PATH" and must stay bare.
RELATIVE_TO_FILE = frozenset({"node.data_dir", "node.model_store", "mesh.secret_file", "model_dirs", "api.tls_cert",
                              "api.tls_key"})

SECRETS = frozenset({"mesh.secret", "api.api_key"})


def env_name(dotted: str) -> str:
    """The environment variable that sets a key: api.port -> MESH_NODE_API_PORT."""
    return "MESH_NODE_" + dotted.replace(".", "_").upper()


def siblings(prefix: str) -> list[str]:
    """The keys and tables valid directly under `prefix` ("" for the top level)."""
    names = set(FIELDS) | SECTIONS | {"models"}
    depth = prefix.count(".") + 1 if prefix else 0
    out = []
    for name in names:
        parts = name.split(".")
        if len(parts) == depth + 1 and ".".join(parts[:depth]) == prefix:
            out.append(parts[-1])
    return sorted(out)


def suggest(word: str, candidates: list[str]) -> str:
    """A ", did you mean "x"?" hint (or "") for a misspelled key."""
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f', did you mean "{close[0]}"?' if close else ""
