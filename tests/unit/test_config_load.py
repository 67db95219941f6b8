"""load_config: the bad-config table, precedence, paths, secrets, mask."""

from __future__ import annotations

from pathlib import Path

import pytest

from mesh_node.config.load import DEFAULT_LABEL, ConfigError, load_config, mask

# (name, TOML text, dotted key or None, fragment of str(error))
BAD_CONFIGS: list[tuple[str, str, str | None, str]] = [
    ("port_range", "[api]\nport = 70000\n", "api.port",
     "expected an integer from 1 to 65535, got 70000"),
    ("port_string", '[api]\nport = "80"\n', "api.port", 'got "80"'),
    ("port_bool", "[api]\nport = true\n", "api.port", "got true"),
    ("gossip_port_zero", "[mesh]\ngossip_port = 0\n", "mesh.gossip_port", "got 0"),
    ("rpc_port_float", "[backends.llama]\nrpc_port = 50052.5\n", "backends.llama.rpc_port",
     "got 50052.5"),
    ("unknown_key", "[api]\nprot = 7\n", "api.prot", 'unknown key, did you mean "api.port"?'),
    ("unknown_section", '[nod]\nname = "a"\n', "nod", 'did you mean "node"?'),
    ("unknown_backend", "[backends.gpu]\nx = 1\n", "backends.gpu", "unknown key"),
    ("top_key_in_table", '[node]\nname = "a"\ndemo_model = true\n', "node.demo_model",
     "top-level key: put it above the first [table]"),
    ("section_not_table", "node = 5\n", "node", "expected a table, got 5"),
    ("peer_no_port", '[mesh]\npeers = ["host"]\n', "mesh.peers", 'got "host"'),
    ("peer_bad_port", '[mesh]\npeers = ["h:70000"]\n', "mesh.peers", 'got "h:70000"'),
    ("peers_not_list", '[mesh]\npeers = "h:1"\n', "mesh.peers", "expected a list of peer"),
    ("mdns_string", '[mesh]\nmdns = "yes"\n', "mesh.mdns", 'expected true or false, got "yes"'),
    ("mesh_name_space", '[mesh]\nname = "my mesh"\n', "mesh.name", "expected a name of 1-63"),
    ("empty_node_name", '[node]\nname = ""\n', "node.name", 'got ""'),
    ("log_level", '[log]\nlevel = "verbose"\n', "log.level", 'expected one of "debug"'),
    ("log_format", '[log]\nformat = "xml"\n', "log.format", 'got "xml"'),
    ("headroom_low", "[election]\nheadroom = 0.9\n", "election.headroom",
     "expected a number >= 1.0, got 0.9"),
    ("rtt_zero", "[election]\nmax_rtt_ms = 0\n", "election.max_rtt_ms", "expected a number > 0"),
    ("memory_words", '[node]\nmemory_bytes = "8 gigs"\n', "node.memory_bytes",
     'expected a positive size in bytes'),
    ("memory_zero", "[node]\nmemory_bytes = 0\n", "node.memory_bytes", "got 0"),
    ("body_negative", "[api]\nmax_body_bytes = -1\n", "api.max_body_bytes", "got -1"),
    ("threads_zero", "[backends.llama]\nthreads = 0\n", "backends.llama.threads", "got 0"),
    ("extra_args_string", '[backends.llama]\nextra_args = "--foo"\n',
     "backends.llama.extra_args", 'expected a list of strings, got "--foo"'),
    ("model_no_path", '[[models]]\nalias = "x"\n', "models[0].path", "missing required key"),
    ("model_replicas", '[[models]]\npath = "a.gguf"\n\n[[models]]\npath = "b.gguf"\nreplicas = 0\n',
     "models[1].replicas", "expected an integer from 1 to 64, got 0"),
    ("model_unknown_key", '[[models]]\npath = "a.gguf"\nrepl = 2\n', "models[0].repl",
     'did you mean "replicas"?'),
    ("models_not_array", 'models = "x"\n', "models", "expected an array of tables"),
    ("model_not_table", 'models = [1]\n', "models[0]", "expected a table with a path, got 1"),
    ("duplicate_alias", '[[models]]\npath = "a.gguf"\nalias = "m"\n[[models]]\npath = "b.gguf"\n'
     'alias = "m"\n', "models[1].alias", 'expected a unique alias, got "m"'),
    ("secret_and_file", '[mesh]\nsecret = "s"\nsecret_file = "s.txt"\n', "mesh.secret_file",
     "mesh.secret and mesh.secret_file are both set"),
    ("secret_file_missing", '[mesh]\nsecret_file = "nope.txt"\n', "mesh.secret_file",
     "No such file or directory"),
    ("demo_model_int", "demo_model = 1\n", "demo_model", "expected true or false, got 1"),
    ("model_dirs_not_list", 'model_dirs = "~/m"\n', "model_dirs", "expected a list of folder"),
    ("idle_unload_word", '[election]\nidle_unload = "soon"\n', "election.idle_unload",
     'expected a duration: seconds as a number, or a string like "15m"'),
    ("idle_unload_negative", "[election]\nidle_unload = -5\n", "election.idle_unload",
     "got -5"),
    ("load_timeout_bool", "[election]\nload_timeout = true\n", "election.load_timeout",
     "got true"),
    ("max_replicas_zero", "[election]\nmax_replicas = 0\n", "election.max_replicas",
     "expected an integer from 1 to 64, got 0"),
    ("model_preload_str", '[[models]]\npath = "a.gguf"\npreload = "yes"\n',
     "models[0].preload", 'expected true or false, got "yes"'),
    ("model_idle_bad", '[[models]]\npath = "a.gguf"\nidle_unload = "5 minutes"\n',
     "models[0].idle_unload", "expected a duration"),
    ("scan_hf_cache_int", "scan_hf_cache = 0\n", "scan_hf_cache", "expected true or false"),
    ("toml_syntax", "[api]\nport = \n", None, "invalid TOML: Invalid value (at line 2, column 8)"),
    ("toml_duplicate_table", "[api]\nport = 1\n[api]\n", None, "invalid TOML: Cannot declare"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), [c[1:] for c in BAD_CONFIGS],
                         ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_file_key_and_problem(tmp_path: Path, text: str, key: str | None,
                                               fragment: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    err = info.value
    assert err.file == str(path)
    assert err.key == key
    assert err.expected
    assert fragment in str(err)
    assert str(err).startswith(f"{path}: {key}: " if key else f"{path}: ")
    assert "\n" not in str(err)


def test_bad_config_table_is_large_enough() -> None:
    assert len(BAD_CONFIGS) >= 20


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.file == str(path) and info.value.key is None
    assert str(info.value) == f"{path}: cannot read the config file: No such file or directory"


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "bin.toml"
    path.write_bytes(b"\xff\xfe[api]")
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(path, env={})


def test_empty_secret_file(tmp_path: Path) -> None:
    (tmp_path / "s.txt").write_text("  \n")
    path = tmp_path / "x.toml"
    path.write_text('[mesh]\nsecret_file = "s.txt"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.key == "mesh.secret_file" and "(empty)" in str(info.value)


def test_bad_env_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"MESH_NODE_API_PORT": "abc"})
    assert info.value.file == "environment (MESH_NODE_API_PORT)"
    assert info.value.key == "api.port"
    assert str(info.value).endswith('expected an integer from 1 to 65535, got "abc"')


def test_unknown_override_is_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={}, overrides={"api.prot": 1})
    assert info.value.file == "command line" and info.value.key == "api.prot"
    assert 'did you mean "api.port"?' in str(info.value)


def test_bad_override_value() -> None:
    with pytest.raises(ConfigError, match=r"^command line: api.port: .* got 0$"):
        load_config(None, env={}, overrides={"api.port": 0})


# --- precedence: flag > env > file > embedded default > dataclass default ---------------------

def _file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_precedence_each_layer_wins_over_the_one_below(tmp_path: Path) -> None:
    path = _file(tmp_path, "[api]\nport = 9400\n")
    env = {"MESH_NODE_API_PORT": "9500"}
    assert load_config(None, env={}).api.port == 9337  # embedded default.toml
    assert load_config(path, env={}).api.port == 9400  # file
    assert load_config(path, env=env).api.port == 9500  # environment
    assert load_config(path, env=env, overrides={"api.port": 9600}).api.port == 9600  # flag
    assert load_config(path, env=env, overrides={"api.port": None}).api.port == 9500  # unset flag


def test_dataclass_defaults_fill_what_no_layer_sets() -> None:
    config = load_config(None, env={})
    assert config.api.max_body_bytes == 8 * 1024 * 1024
    assert config.election.headroom == 1.1 and config.backends.llama.rpc_port == 50052
    assert config.source is None


def test_embedded_default_is_the_make_run_config() -> None:
    config = load_config(None, env={})
    assert config.mesh.name == "default" and config.mesh.secret is None
    assert config.demo_model is True and config.mesh.mdns is True
    assert (config.api.port, config.mesh.gossip_port) == (9337, 9338)
    assert config.node.data_dir == Path("~/.mesh-node").expanduser()


def test_env_values_are_typed() -> None:
    env = {"MESH_NODE_MESH_MDNS": "off", "MESH_NODE_MESH_PEERS": "10.0.0.2:9338, b.local:1",
           "MESH_NODE_NODE_MEMORY_BYTES": "8GiB", "MESH_NODE_ELECTION_HEADROOM": "1.5",
           "MESH_NODE_BACKENDS_LLAMA_THREADS": "4", "MESH_NODE_NODE_NAME": "envnode",
           "MESH_NODE_MESH_SECRET": "s3cret", "MESH_NODE_LOG_LEVEL": "DEBUG",
           "MESH_NODE_DEMO_MODEL": "false", "MESH_NODE_API_API_KEY": "k"}
    c = load_config(None, env=env)
    assert c.mesh.mdns is False and c.mesh.peers == ("10.0.0.2:9338", "b.local:1")
    assert c.node.memory_bytes == 8 * 2**30 and c.election.headroom == 1.5
    assert c.backends.llama.threads == 4 and c.node.name == "envnode"
    assert c.mesh.secret == "s3cret" and c.log.level == "debug" and c.demo_model is False
    assert c.api.api_key == "k"


def test_empty_env_variable_means_unset() -> None:
    assert load_config(None, env={"MESH_NODE_API_PORT": ""}).api.port == 9337


def test_unrelated_env_variables_are_ignored() -> None:
    assert load_config(None, env={"MESH_NODE_LAB_FULL": "1"}).api.port == 9337


def test_string_override_is_parsed_like_env() -> None:
    c = load_config(None, env={}, overrides={"api.port": "9444", "mesh.mdns": "no"})
    assert c.api.port == 9444 and c.mesh.mdns is False


def test_sizes() -> None:
    for text, n in [("512MB", 512 * 10**6), ("8GiB", 8 * 2**30), ("1.5 GiB", 3 * 2**29),
                    ("1024", 1024)]:
        assert load_config(None, env={"MESH_NODE_NODE_MEMORY_BYTES": text}).node.memory_bytes == n


def test_peers_accept_ipv6_and_hostnames(tmp_path: Path) -> None:
    path = _file(tmp_path, '[mesh]\npeers = ["[fe80::1]:9338", "studio.local:9338", "10.1.2.3:1"]\n')
    assert len(load_config(path, env={}).mesh.peers) == 3


# --- paths -----------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "conf"
    sub.mkdir()
    (sub / "secret.txt").write_text("  hunter2hunter2 \n")
    path = sub / "c.toml"
    path.write_text('model_dirs = ["models"]\n[node]\ndata_dir = "state"\n[mesh]\n'
                    'secret_file = "secret.txt"\n[backends.llama]\nserver_bin = "llama-server"\n'
                    'rpc_bin = "bin/rpc-server"\n[[models]]\npath = "m/a.gguf"\n'
                    '[[models]]\npath = "/abs/b.gguf"\n')
    c = load_config(path, env={})
    assert c.models[0].path == sub / "m" / "a.gguf" and c.models[1].path == Path("/abs/b.gguf")
    assert c.model_dirs == (sub / "models",) and c.node.data_dir == sub / "state"
    assert c.mesh.secret == "hunter2hunter2" and c.mesh.secret_file == sub / "secret.txt"
    assert c.backends.llama.server_bin == Path("llama-server")  # bare name: PATH lookup
    assert c.backends.llama.rpc_bin == sub / "bin" / "rpc-server"
    assert c.source == path.resolve()


def test_tilde_is_expanded(tmp_path: Path) -> None:
    path = _file(tmp_path, '[node]\ndata_dir = "~/x"\n')
    assert load_config(path, env={}).node.data_dir == Path.home() / "x"


def test_env_paths_resolve_against_the_working_folder(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    c = load_config(None, env={"MESH_NODE_NODE_DATA_DIR": "d"})
    assert c.node.data_dir == tmp_path / "d"


# --- secrets ---------------------------------------------------------------------------------

def test_env_secret_beats_file_secret_file(tmp_path: Path) -> None:
    path = _file(tmp_path, '[mesh]\nsecret_file = "/does/not/exist"\n')
    c = load_config(path, env={"MESH_NODE_MESH_SECRET": "from-env"})
    assert c.mesh.secret == "from-env" and c.mesh.secret_file is None


def test_env_secret_file_beats_file_secret(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("from-file\n")
    path = _file(tmp_path, '[mesh]\nsecret = "inline"\n')
    c = load_config(path, env={"MESH_NODE_MESH_SECRET_FILE": str(tmp_path / "s")})
    assert c.mesh.secret == "from-file"


def test_secret_is_not_in_repr(tmp_path: Path) -> None:
    c = load_config(None, env={"MESH_NODE_MESH_SECRET": "topsecret-value"})
    assert "topsecret-value" not in repr(c)


# --- demo model rule -------------------------------------------------------------------------

def test_demo_default_only_for_a_node_with_nothing_else(tmp_path: Path) -> None:
    assert load_config(_file(tmp_path, "[api]\nport = 1\n"), env={}).demo_model is True
    assert load_config(_file(tmp_path, '[[models]]\npath = "a.gguf"\n'), env={}).demo_model is False
    assert load_config(_file(tmp_path, 'model_dirs = ["m"]\n'), env={}).demo_model is False
    explicit = _file(tmp_path, 'demo_model = true\n[[models]]\npath = "a.gguf"\n')
    assert load_config(explicit, env={}).demo_model is True


# --- defaults and mask -----------------------------------------------------------------------

def test_node_name_defaults_to_short_hostname(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "studio.local")
    assert load_config(None, env={}).node.name == "studio"


def test_mask_hides_secrets_and_is_json_ready(tmp_path: Path) -> None:
    import json

    path = _file(tmp_path, '[mesh]\nsecret = "s3cret-s3cret"\n[api]\napi_key = "key-123"\n'
                 '[[models]]\npath = "a.gguf"\n')
    c = load_config(path, env={})
    m = mask(c)
    text = json.dumps(m)
    assert "s3cret-s3cret" not in text and "key-123" not in text
    assert m["mesh"]["secret"] == "***" and m["api"]["api_key"] == "***"
    assert m["models"][0]["path"] == str(tmp_path / "a.gguf")
    assert c.mesh.secret == "s3cret-s3cret"  # the config itself is untouched


def test_mask_leaves_unset_secrets_unset() -> None:
    m = mask(load_config(None, env={}))
    assert m["mesh"]["secret"] is None and m["api"]["api_key"] is None


def test_default_label_is_stable() -> None:
    assert DEFAULT_LABEL == "<embedded default.toml>"
