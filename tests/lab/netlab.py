"""The multi-host lab: N hosts in network namespaces on a bridge, with fault injection.

    with Lab(3) as lab:
        p = lab.host(1).run([...], log_path=...)
        lab.drop(2, 10)            # 10% of UDP into h2 lost at random (nftables numgen)
        lab.partition([[1], [2, 3]]); lab.heal()

Layout (FIELD-NOTES): bridge br0 (multicast snooping off, so mDNS floods) in namespace
`<prefix>-sw`; host k is namespace `<prefix>-hk` with eth0 = 10.77.X.k/24 and lo up; X is
random per run. The kernel has no netem: loss and partitions are nftables rules on each host's
input hook, pauses are SIGSTOP/SIGCONT of the process group, crashes SIGKILL. Everything the
lab creates is removed by close() (context manager, atexit, and the pytest fixture).
"""

from __future__ import annotations

import atexit
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from netlab_proc import (
    HttpResult,
    LabError,
    NodeProc,
    api_port_of,
    mesh_node_bin,
    ns_http_get,
    wait_until,
)

__all__ = ["Host", "HttpResult", "Lab", "LabError", "NodeProc", "ensure_prerequisites",
           "sweep_stale", "wait_until"]

LAB_PREFIX = "mnlab"
_STALE_RE = re.compile(rf"^{LAB_PREFIX}-(\d+)-[0-9a-f]+-(sw|h\d+)$")
_NFT_TABLE = "mnlab"
_SYSDEPS = Path(__file__).resolve().parents[2] / "scripts" / "sysdeps.sh"


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True,
         timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp


def ensure_prerequisites() -> None:
    """Root, `ip`, `curl` and `nft` (installed via scripts/sysdeps.sh if missing), or LabError."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, nftables); run the lab tests as root")
    if shutil.which("nft") is None and _SYSDEPS.exists():
        _run(["bash", str(_SYSDEPS)], timeout=600)
    missing = [t for t in ("ip", "nft", "curl") if shutil.which(t) is None]
    if missing:
        raise LabError(f"the lab needs {missing} (Debian: iproute2, nftables, curl)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _list_netns() -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _delete_netns(ns: str) -> None:
    """Kill whatever still runs in `ns`, then delete it (its veth ends go with it)."""
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    _run(["ip", "netns", "delete", ns], check=False)


def sweep_stale() -> list[str]:
    """Delete lab namespaces whose creating process is gone (a crashed earlier run)."""
    stale = [ns for ns in _list_netns()
             if (m := _STALE_RE.match(ns)) and not _pid_alive(int(m.group(1)))]
    for ns in stale:
        _delete_netns(ns)
    return stale


class Host:
    """One lab host: a namespace with eth0 on the lab bridge."""

    def __init__(self, lab: Lab, index: int, ns: str, addr: str) -> None:
        self.lab, self.index, self.ns, self.addr = lab, index, ns, addr
        self.procs: list[subprocess.Popen[bytes]] = []
        self.workdir = lab.workdir / f"h{index}"
        self.workdir.mkdir(parents=True, exist_ok=True)

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            log_path: Path | None = None, *, stdout_path: Path | None = None
            ) -> subprocess.Popen[bytes]:
        """Start argv in this host (own process group); output to log_path (or stdout_path)."""
        log_path = log_path or self.workdir / f"{Path(argv[0]).name}-{len(self.procs)}.log"
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        with open(log_path, "ab") as err, open(stdout_path or log_path, "ab") as out:
            proc = subprocess.Popen(["ip", "netns", "exec", self.ns, *argv], env=full_env,
                                    stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def exec(self, argv: Sequence[str], timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        """Run a short command in this host and wait for it (LabError on failure)."""
        return _run(["ip", "netns", "exec", self.ns, *argv], timeout=timeout)

    def start_node(self, config_toml: str, env: Mapping[str, str] | None = None, *,
                   command: Sequence[str] | None = None) -> NodeProc:
        """Write the config into this host's dir and start `mesh-node run --config` on it.

        `command` replaces `mesh-node run` (the config path is appended), e.g. for a stand-in.
        """
        n = len(self.procs)
        node_dir = self.workdir / f"node-{n}"
        node_dir.mkdir(parents=True, exist_ok=True)
        cfg = node_dir / "config.toml"
        cfg.write_text(config_toml)
        log = node_dir / "node.log"
        argv = [*command, str(cfg)] if command else [str(mesh_node_bin()), "run", "--config", str(cfg)]
        proc = self.run(argv, env, log)
        return NodeProc(self.ns, self.addr, proc, cfg, log, api_port_of(config_toml))

    def signal(self, sig: int) -> None:
        """Send `sig` to the process group of every live process started here."""
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    pass

    def nft(self, script: str) -> None:
        """Apply an nftables script inside this host."""
        _run(["ip", "netns", "exec", self.ns, "nft", "-f", "-"], stdin=script)


class Lab:
    """N hosts on one bridge; a context manager that always cleans up."""

    def __init__(self, n_hosts: int, prefix: str | None = None,
                 workdir: Path | None = None) -> None:
        if not 1 <= n_hosts <= 250:
            raise ValueError("n_hosts must be within 1..250")
        ensure_prerequisites()
        self.prefix = prefix or f"{LAB_PREFIX}-{os.getpid()}-{secrets.token_hex(3)}"
        self.subnet = random.randint(1, 254)  # 10.77.X.0/24: never clashes with a leftover lab
        # Logs live in workdir; a temp dir we made ourselves is removed on close.
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self.namespaces: list[str] = []
        self.hosts: list[Host] = []
        self._closed = False
        atexit.register(self.close)
        try:
            self._build(n_hosts)
        except BaseException:
            self.close()
            raise

    def _ns(self, name: str) -> str:
        ns = f"{self.prefix}-{name}"
        _run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        return ns

    def _build(self, n: int) -> None:
        sw = self._ns("sw")
        self.switch_ns = sw
        _run(["ip", "-n", sw, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])
        _run(["ip", "-n", sw, "link", "set", "br0", "up"])
        if "mcast_snooping 0" not in _run(["ip", "-d", "-n", sw, "link", "show", "br0"]).stdout:
            raise LabError("bridge br0 still snoops multicast: mDNS would not flood")
        for k in range(1, n + 1):
            ns = self._ns(f"h{k}")
            addr = f"10.77.{self.subnet}.{k}"
            _run(["ip", "-n", sw, "link", "add", f"v{k}", "type", "veth",
                  "peer", "name", "eth0", "netns", ns])
            _run(["ip", "-n", sw, "link", "set", f"v{k}", "master", "br0", "up"])
            _run(["ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            host = Host(self, k, ns, addr)
            host.nft(_nft_base())
            self.hosts.append(host)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def host(self, k: int) -> Host:
        """Host k, 1-based."""
        if not 1 <= k <= len(self.hosts):
            raise IndexError(f"lab has hosts 1..{len(self.hosts)}, not {k}")
        return self.hosts[k - 1]

    # --- processes ---------------------------------------------------------------------------
    def kill(self, k: int, sig: int = signal.SIGKILL) -> None:
        """Signal every process started on host k (default: crash it)."""
        self.host(k).signal(sig)

    def pause(self, k: int) -> None:
        self.host(k).signal(signal.SIGSTOP)

    def resume(self, k: int) -> None:
        self.host(k).signal(signal.SIGCONT)

    # --- faults ------------------------------------------------------------------------------
    def drop(self, k: int, percent: int) -> None:
        """Drop `percent`% of incoming UDP on host k at random (0 removes the loss)."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        # numgen's range is 0..99, so 100% is a plain drop.
        chance = f"numgen random mod 100 < {percent} " if percent < 100 else ""
        rule = f"add rule inet {_NFT_TABLE} loss meta l4proto udp {chance}drop\n" if percent else ""
        self.host(k).nft(f"flush chain inet {_NFT_TABLE} loss\n{rule}")

    def block(self, src: int, dst: int) -> None:
        """One-way cut: host dst drops everything from host src (dst -> src still flows)."""
        self.host(dst).nft(f"add rule inet {_NFT_TABLE} part ip saddr {self.host(src).addr} drop\n")

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Hosts in different groups cannot talk (both ways); hosts not listed are unaffected."""
        for i, ga in enumerate(groups):
            for gb in groups[i + 1:]:
                for a in ga:
                    for b in gb:
                        self.block(a, b)
                        self.block(b, a)

    def heal(self) -> None:
        """Remove every partition rule and bring downed links back up (loss rules stay)."""
        for h in self.hosts:
            h.nft(f"flush chain inet {_NFT_TABLE} part\n")
            _run(["ip", "-n", h.ns, "link", "set", "eth0", "up"])

    def link_down(self, k: int) -> None:
        _run(["ip", "-n", self.host(k).ns, "link", "set", "eth0", "down"])

    def link_up(self, k: int) -> None:
        _run(["ip", "-n", self.host(k).ns, "link", "set", "eth0", "up"])

    def http_get(self, k: int, url_or_path: str, port: int = 9337,
                 timeout: float = 5.0) -> HttpResult:
        """GET from inside host k; a bare path targets host k's own address and `port`."""
        url = url_or_path
        if url.startswith("/"):
            url = f"http://{self.host(k).addr}:{port}{url}"
        return ns_http_get(self.host(k).ns, url, timeout)

    # --- cleanup -----------------------------------------------------------------------------
    def close(self) -> None:
        """Kill every process started here and delete every namespace; idempotent."""
        if self._closed:
            return
        self._closed = True
        for h in self.hosts:
            h.signal(signal.SIGCONT)  # a stopped process group must see its SIGKILL at once
            h.signal(signal.SIGKILL)
        for h in self.hosts:
            for proc in h.procs:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in reversed(self.namespaces):
            _delete_netns(ns)
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.close)


def _nft_base() -> str:
    """Per-host table: `loss` (random UDP drops) and `part` (partitions) on the input hook."""
    return (f"add table inet {_NFT_TABLE}\n"
            f"add chain inet {_NFT_TABLE} loss {{ type filter hook input priority -10; policy accept; }}\n"
            f"add chain inet {_NFT_TABLE} part {{ type filter hook input priority -5; policy accept; }}\n")
