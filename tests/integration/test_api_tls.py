"""Client-facing HTTPS (`[api] tls_cert` / `tls_key` / `tls_port`) on a real `mesh-node run`:
the official openai client over TLS verifies the node's certificate; the plain port (the mesh's
own) still answers; a half TLS config is a clear config error (exit 2)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import signal
import ssl
import subprocess
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from openai import OpenAI

from tests.integration.test_cli_run_sigterm import MESH_NODE, _config, _wait_healthy
from tests.support.ports import free_tcp_udp_port


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mesh-node test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
                ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_listener_serves_clients_with_a_verified_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    api_port, gossip_port, tls_port = (free_tcp_udp_port() for _ in range(3))
    config = _config(tmp_path, api_port, gossip_port)
    text = config.read_text().replace(
        f"port = {api_port}\n",
        f'port = {api_port}\ntls_cert = "{cert}"\ntls_key = "{key}"\ntls_port = {tls_port}\n')
    config.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESH_NODE_")}
    err_log = tmp_path / "stderr.log"
    with err_log.open("wb") as err:
        proc = subprocess.Popen([str(MESH_NODE), "run", "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            _wait_healthy(proc, f"http://127.0.0.1:{api_port}/healthz", err_log)
            https = f"https://127.0.0.1:{tls_port}"
            r = httpx.get(f"{https}/api/status", verify=ssl.create_default_context(cafile=str(cert)), timeout=10, trust_env=False)
            assert r.status_code == 200 and r.json()["node"]["name"] == "sigterm-test"
            client = OpenAI(base_url=f"{https}/v1", api_key="unused",
                            http_client=httpx.Client(verify=ssl.create_default_context(cafile=str(cert)), trust_env=False))
            assert client.models.list().data == []  # no model: an empty list, over TLS
            try:  # an unverified client is refused by the handshake, not served
                httpx.get(f"{https}/healthz", timeout=5, trust_env=False)
                raise AssertionError("a client that does not trust the cert was served")
            except httpx.ConnectError as e:
                assert "CERTIFICATE_VERIFY_FAILED" in str(e)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0


def test_half_a_tls_config_is_a_clear_config_error(tmp_path: Path) -> None:
    cert, _ = _self_signed(tmp_path)
    path = tmp_path / "half.toml"
    path.write_text(f'[api]\ntls_cert = "{cert}"\n')
    p = subprocess.run([str(MESH_NODE), "config", "check", str(path)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 2, p
    assert "api.tls_key" in p.stderr and "api.tls_cert" in p.stderr and "Traceback" not in p.stderr
    path.write_text(f'[api]\ntls_cert = "{cert}"\ntls_key = "{tmp_path / "nope.pem"}"\n')
    p = subprocess.run([str(MESH_NODE), "config", "check", str(path)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert p.returncode == 2 and "api.tls_key" in p.stderr and "nope.pem" in p.stderr, p
