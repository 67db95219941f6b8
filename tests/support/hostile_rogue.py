"""The rogue of the hostile-LAN lab: run inside its own namespace, one subcommand per attack.

    python hostile_rogue.py advertise --address A --adverts JSON --seconds S
    python hostile_rogue.py browse --address A --seconds S
    python hostile_rogue.py record --address A --secret S --mesh M --seeds h:p,.. --seconds S --out F
                                   [--frames-out F2]
    python hostile_rogue.py replay --file F --targets h:p,.. [--rounds N] [--parity P] [--no-same]
    python hostile_rogue.py replay-all --file F --frames F2 --secret S --mesh M --targets h:p,..
    python hostile_rogue.py idle --targets h:p --count N --seconds S --ready F --stop F
    python hostile_rogue.py udp --kind K --targets h:p,.. --count N [--mesh M]
    python hostile_rogue.py tcp --kind K --targets h:p,.. --count N [--frame-mb M] [--parallel P]

Every subcommand prints one JSON line of what it did (counts, sizes) for the test to check.
It imports only mesh_node, never the tests package (it runs as a plain script).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import msgpack
import trio

from mesh_node.discovery.bus import ServiceAdvert, ZeroconfBus
from mesh_node.discovery.txt import SERVICE_TYPE, Advert, encode_txt
from mesh_node.gossip.effects import Send
from mesh_node.gossip.members import Update
from mesh_node.gossip.shell import GossipService
from mesh_node.gossip.wire import (
    MAX_DATAGRAM,
    NONCE_LEN,
    Gossip,
    Ping,
    PushPull,
    WireError,
    open_,
    open_env,
    seal,
)
from mesh_node.security import MeshKeys, derive_keys

ROGUE_WRONG_SECRET = "rogue-guess-of-the-secret"
Target = tuple[str, int]


def _targets(text: str) -> list[Target]:
    out = []
    for item in filter(None, text.split(",")):
        host, _, port = item.rpartition(":")
        out.append((host, int(port)))
    return out


# --- forged mDNS adverts ------------------------------------------------------------------------
def advertise(address: str, adverts: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Register each advert (TXT from `txt` as given, or encoded from the fields), hold, leave."""
    bus = ZeroconfBus([address])
    names = []
    try:
        for i, a in enumerate(adverts):
            txt = a.get("txt") or encode_txt(Advert(a["id"], a.get("name", "rogue"), a["md"], 1,
                                                    a.get("gp", 9338), a.get("ap", 9337)))
            instance = f"rogue-{i}-{os.getpid()}.{SERVICE_TYPE}"
            bus.register(ServiceAdvert(instance, f"rogue-{i}.local.", address,
                                       a.get("ap", 9337), txt))
            names.append(instance)
        time.sleep(seconds)
    finally:
        bus.close()
    return {"registered": len(names)}


def browse(address: str, seconds: float) -> dict[str, Any]:
    """Every `_mesh-node._tcp.local.` instance seen in `seconds`, resolved: its raw TXT."""
    bus = ZeroconfBus([address])
    seen: set[str] = set()
    try:
        bus.browse(lambda name, present: seen.add(name) if present else None)
        time.sleep(seconds)
        out = {}
        for name in sorted(seen):
            svc = bus.resolve(name, 3.0)
            if svc is not None:
                out[name] = {_s(k): _s(v) for k, v in svc.properties.items()}
    finally:
        bus.close()
    return {"instances": out}


def _s(v: bytes | str | None) -> str | None:
    return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v


# --- a genuine member whose datagrams are recorded for later replay -----------------------------
# One record per datagram: [sealed bytes, host, port, says the member is alive, received].
# Sent ones keep their destination; received ones their source (a node never sees its own
# datagrams' nonces, so a datagram it sent is fresh to it, and to every other node).
Record = list[Any]


class _Tap:
    """A UDP socket whose received datagrams are copied into `log`."""

    def __init__(self, sock: Any, log: list[tuple[bytes, str, int]]) -> None:
        self.sock, self.log = sock, log

    async def recvfrom(self, n: int) -> tuple[bytes, Any]:
        data, src = await self.sock.recvfrom(n)
        self.log.append((data, src[0], src[1]))
        return data, src


class RecordingGossip(GossipService):
    """GossipService that keeps a copy of every sealed datagram and push-pull frame it sends
    and receives (frames without their 4-byte length prefix)."""

    sent_log: list[tuple[bytes, str, int]]
    recv_log: list[tuple[bytes, str, int]]
    frame_log: list[tuple[bytes, bool]]  # (sealed frame, received)

    def _seal_state(self, join: bool) -> bytes:
        data = super()._seal_state(join)
        self.frame_log.append((data, False))
        return data

    def _open_state(self, data: bytes) -> PushPull | None:
        self.frame_log.append((data, True))
        return super()._open_state(data)

    async def _send(self, e: Send) -> None:
        assert self._udp is not None
        data = self.seal_message(e.msg, MAX_DATAGRAM)  # with this boot's envelope
        self.sent_log.append((data, e.addr[0], e.addr[1]))
        try:
            await self._udp.sendto(data, e.addr)
        except OSError:
            self.stats["send_errors"] += 1

    async def _recv_loop(self, udp: Any) -> None:
        await super()._recv_loop(cast(trio.socket.SocketType, _Tap(udp, self.recv_log)))


async def _record(address: str, secret: str, mesh: str, seeds: list[Target], node_id: str,
                  seconds: float) -> RecordingGossip:
    g = RecordingGossip(node_id, address, 9338, (address, 9338), derive_keys(secret, mesh))
    g.sent_log, g.recv_log, g.frame_log = [], [], []
    async with trio.open_nursery() as nursery:
        await nursery.start(g.run)
        for host, port in seeds:
            g.add_seed(host, port)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()  # a crash, not a leave: the others must declare it dead
    return g


def record(address: str, secret: str, mesh: str, seeds: list[Target], node_id: str,
           seconds: float, out: str, frames_out: str = "") -> dict[str, Any]:
    g = trio.run(_record, address, secret, mesh, seeds, node_id, seconds)
    items: list[Record] = [[d, h, p, _says_alive(g.keys, d, node_id), received]
                           for received, log in ((False, g.sent_log), (True, g.recv_log))
                           for d, h, p in log]
    with open(out, "wb") as f:
        f.write(msgpack.packb(items, use_bin_type=True))
    frames = [[d, _says_alive(g.keys, d, node_id, None), received] for d, received in g.frame_log]
    if frames_out:
        with open(frames_out, "wb") as f:
            f.write(msgpack.packb(frames, use_bin_type=True))
    members = sorted(m.node for m in g.members() if m.status == "alive")
    return {"sent": len(g.sent_log), "received": len(g.recv_log),
            "saying_alive": sum(1 for i in items if i[3]), "alive_seen": members,
            "frames": len(frames), "frames_saying_alive": sum(1 for f in frames if f[1])}


def _says_alive(keys: MeshKeys, data: bytes, node_id: str,
                limit: int | None = MAX_DATAGRAM) -> bool:
    """Whether a datagram (or frame) says `node_id` is alive (what a replay would use to
    revive it)."""
    try:
        msg = open_(keys, data, limit)
    except WireError:
        return False
    return any(u.node == node_id and u.status == "alive" for u in msg.updates)


def replay(path: str, targets: list[Target], rounds: int, parity: int,
           same: bool) -> dict[str, Any]:
    """Replay a capture to the nodes at `targets`.

    Sent datagrams go back to their destination (if `same`: a nonce it has seen). Every
    datagram also goes to each target that never received it (fresh nonces), but of those
    saying the member is alive only the even/odd ones (`parity` 0/1; -1 all), so a later run
    still holds fresh ones.
    """
    with open(path, "rb") as f:
        items: list[Record] = msgpack.unpackb(f.read(), raw=False)
    sent = {"same_destination": 0, "fresh": 0, "fresh_saying_alive": 0}
    rank = {i: n for n, i in enumerate(i for i, item in enumerate(items) if item[3])}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(rounds):
            for i, (data, host, port, alive, received) in enumerate(items):
                if same and not received:
                    s.sendto(data, (host, port))
                    sent["same_destination"] += 1
                if not (parity < 0 or (rank[i] % 2 == parity if alive else parity == 0)):
                    continue
                for t in targets:
                    if received or t != (host, port):
                        s.sendto(data, t)
                        sent["fresh"] += 1
                        sent["fresh_saying_alive"] += int(alive)
                time.sleep(0.0005)  # a burst the receiver keeps up with: counted, not lost
    return sent


def _sent_at(keys: MeshKeys, data: bytes) -> int | None:
    """The wall second sealed in a datagram or frame; None if it does not authenticate."""
    try:
        return open_env(keys, data, None)[0].sent_at
    except WireError:
        return None


def _push_frame(target: Target, data: bytes) -> str:
    """Send one frame on a fresh connection; how it ended ("answered": the node accepted it)."""
    try:
        with socket.create_connection(target, timeout=5) as s:
            s.sendall(len(data).to_bytes(4, "big") + data)
            return "answered" if s.recv(16) else "closed"
    except OSError as e:
        return type(e).__name__


def replay_all(path: str, frames_path: str, keys: MeshKeys, targets: list[Target],
               pace: float) -> dict[str, Any]:
    """Every authentic captured datagram and frame to every target, once. Frames go one
    connection at a time (a node serves one inbound push-pull per source address)."""
    with open(path, "rb") as f:
        items: list[Record] = msgpack.unpackb(f.read(), raw=False)
    with open(frames_path, "rb") as f:
        frames: list[list[Any]] = msgpack.unpackb(f.read(), raw=False)
    stamps = [t for t in (_sent_at(keys, x[0]) for x in [*items, *frames]) if t is not None]
    out: dict[str, Any] = {"datagrams": 0, "datagrams_saying_alive": 0, "frames": 0,
                           "frames_saying_alive": 0, "frame_ended": {}, "inauthentic": 0,
                           "age_s": [round(time.time() - max(stamps), 1),
                                     round(time.time() - min(stamps), 1)] if stamps else []}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data, _h, _p, alive, _received in items:
            if _sent_at(keys, data) is None:
                out["inauthentic"] += 1
                continue
            for t in targets:
                s.sendto(data, t)
                out["datagrams"] += 1
                out["datagrams_saying_alive"] += int(alive)
                time.sleep(pace)
    for data, alive, _received in frames:
        if _sent_at(keys, data) is None:
            out["inauthentic"] += 1
            continue
        for t in targets:
            ended = _push_frame(t, data)
            out["frame_ended"][ended] = out["frame_ended"].get(ended, 0) + 1
            out["frames"] += 1
            out["frames_saying_alive"] += int(alive)
            time.sleep(0.2)  # the node has closed its side and freed this address's slot
    return out


# --- idle TCP connections (slot holding) --------------------------------------------------------
def idle(target: Target, count: int, seconds: float, ready: str, stop: str,
         reopen_per_s: int, sources: list[str]) -> dict[str, Any]:
    """Open `count` TCP connections to `target` and send nothing. Whatever the node closes is
    opened again (at most `reopen_per_s` a second), until the `stop` file appears or
    `seconds` pass; `ready` is written once all `count` were opened. `sources`: local
    addresses to connect from, in turn (default: the host's own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 256)), hard))
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "connect_errors": 0, "closed_by_node": 0}

    def open_one() -> None:
        src = (sources[stats["opened"] % len(sources)], 0) if sources else None
        try:
            s = socket.create_connection(target, timeout=2, source_address=src)
        except OSError:
            stats["connect_errors"] += 1
            return
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        stats["opened"] += 1

    t0 = time.monotonic()
    for _ in range(count):
        open_one()
    with open(ready, "w") as f:
        json.dump({**stats, "open_s": round(time.monotonic() - t0, 2)}, f)
    open_min, deadline, budget_at = len(sel.get_map()), t0 + seconds, time.monotonic()
    while time.monotonic() < deadline and not os.path.exists(stop):
        for key, _ in sel.select(timeout=0.2):
            sock = cast(socket.socket, key.fileobj)
            try:
                data = sock.recv(16)
            except OSError:
                data = b""
            if not data:
                sel.unregister(sock)
                sock.close()
                stats["closed_by_node"] += 1
        budget = int((time.monotonic() - budget_at) * reopen_per_s)
        if budget:
            budget_at = time.monotonic()
        for _ in range(min(count - len(sel.get_map()), budget)):
            open_one()
        open_min = min(open_min, len(sel.get_map()))
    still_open = len(sel.get_map())
    for key in list(sel.get_map().values()):
        cast(socket.socket, key.fileobj).close()
    sel.close()
    return {**stats, "still_open_at_end": still_open, "open_min": open_min,
            "held_s": round(time.monotonic() - t0, 1)}


# --- hostile datagrams --------------------------------------------------------------------------
def _wrong_key(rng: random.Random, mesh: str) -> bytes:
    keys = derive_keys(ROGUE_WRONG_SECRET, mesh)
    u = Update("rogue-wrongkey", "alive", 99, "10.0.0.66", 9338, 1, 1, b"\x80")
    choices: list[Ping | Gossip] = [Ping(rng.randrange(1 << 30), "rogue-wrongkey", "x", (u,)),
                                    Gossip("rogue-wrongkey", (u,))]
    msg = rng.choice(choices)
    return seal(keys, msg, os.urandom(NONCE_LEN))


def _truncated(rng: random.Random, mesh: str) -> bytes:
    whole = _wrong_key(rng, mesh) if rng.random() < 0.5 else b"\x01" + msgpack.packb(
        [4, "rogue-trunc", [[f"rogue-{i}", 0, 1, "1.2.3.4", 9338, 0, 0, None, ""]
                            for i in range(8)]])
    return whole[:rng.randrange(0, len(whole))]


def _oversize(rng: random.Random, mesh: str) -> bytes:
    body = msgpack.packb([4, "rogue-big", [["x" * 500, 0, 1, "a", 1, 0, 0, None, ""]] * 20])
    return (b"\x01" + os.urandom(NONCE_LEN) + body)[:rng.randrange(MAX_DATAGRAM + 1, 60_000)]


def _random(rng: random.Random, mesh: str) -> bytes:
    return os.urandom(rng.randrange(0, 1400))


def _mixed(rng: random.Random, mesh: str) -> bytes:
    return rng.choice([_wrong_key, _truncated, _oversize, _random])(rng, mesh)


KINDS: dict[str, Callable[[random.Random, str], bytes]] = {
    "wrongkey": _wrong_key, "truncated": _truncated, "oversize": _oversize, "random": _random,
    "mixed": _mixed}


def udp(kind: str, targets: list[Target], count: int, mesh: str, pace: float) -> dict[str, Any]:
    """`count` datagrams of `kind` to every target; pace 0 is a flood."""
    rng = random.Random(7)
    sent = errors = 0
    t0 = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for _ in range(count):
            data = KINDS[kind](rng, mesh)
            for t in targets:
                try:
                    s.sendto(data, t)
                    sent += 1
                except OSError:  # EMSGSIZE past 65,507 bytes, ENOBUFS in a flood
                    errors += 1
            if pace:
                time.sleep(pace)
    return {"sent": sent, "errors": errors, "seconds": round(time.monotonic() - t0, 2)}


# --- hostile push-pull (TCP) --------------------------------------------------------------------
def _frame(kind: str, keys: MeshKeys, frame_mb: int) -> bytes:
    if kind == "wrongkey":
        data = seal(keys, PushPull("rogue-pp", True), os.urandom(NONCE_LEN), None)
    elif kind == "big":
        data = b"\x01" + os.urandom(frame_mb << 20)
    else:  # "stall": announce 1 MiB, send nothing
        return (1 << 20).to_bytes(4, "big")
    return len(data).to_bytes(4, "big") + data


def _exchange(target: Target, frame: bytes) -> str:
    try:
        with socket.create_connection(target, timeout=10) as s:
            s.sendall(frame)
            return "answered" if s.recv(16) else "closed"
    except OSError as e:
        return type(e).__name__


def tcp(kind: str, targets: list[Target], count: int, mesh: str, frame_mb: int,
        parallel: int) -> dict[str, Any]:
    """Frames sealed with the wrong key ("wrongkey"), big garbage frames ("big"), or a frame
    header followed by silence ("stall"), `parallel` connections at a time per target;
    returns how each exchange ended."""
    frame = _frame(kind, derive_keys(ROGUE_WRONG_SECRET, mesh), frame_mb)
    jobs = [t for _ in range(count) for t in targets]
    with ThreadPoolExecutor(max_workers=max(1, parallel) * len(targets)) as pool:
        results = list(pool.map(lambda t: _exchange(t, frame), jobs))
    return {"ended": {r: results.count(r) for r in set(results)}, "frames": len(jobs)}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["advertise", "browse", "record", "replay", "replay-all",
                                      "udp", "tcp", "idle"])
    p.add_argument("--address", default="")
    p.add_argument("--adverts", default="[]")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--secret", default="")
    p.add_argument("--mesh", default="lab-mesh")
    p.add_argument("--seeds", default="")
    p.add_argument("--node-id", default="rogue-genuine")
    p.add_argument("--out", default="")
    p.add_argument("--frames-out", default="")
    p.add_argument("--frames", default="")
    p.add_argument("--ready", default="")
    p.add_argument("--stop", default="")
    p.add_argument("--reopen-per-s", type=int, default=200)
    p.add_argument("--sources", default="")
    p.add_argument("--file", default="")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--parity", type=int, default=-1)
    p.add_argument("--no-same", action="store_true")
    p.add_argument("--kind", default="mixed")
    p.add_argument("--targets", default="")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--pace", type=float, default=0.0)
    p.add_argument("--frame-mb", type=int, default=16)
    p.add_argument("--parallel", type=int, default=1)
    a = p.parse_args(argv)
    if a.command == "advertise":
        result = advertise(a.address, json.loads(a.adverts), a.seconds)
    elif a.command == "browse":
        result = browse(a.address, a.seconds)
    elif a.command == "record":
        result = record(a.address, a.secret, a.mesh, _targets(a.seeds), a.node_id, a.seconds,
                        a.out, a.frames_out)
    elif a.command == "replay":
        result = replay(a.file, _targets(a.targets), a.rounds, a.parity, not a.no_same)
    elif a.command == "replay-all":
        result = replay_all(a.file, a.frames, derive_keys(a.secret, a.mesh), _targets(a.targets),
                            a.pace or 0.001)
    elif a.command == "idle":
        result = idle(_targets(a.targets)[0], a.count, a.seconds, a.ready, a.stop,
                      a.reopen_per_s, list(filter(None, a.sources.split(","))))
    elif a.command == "udp":
        result = udp(a.kind, _targets(a.targets), a.count, a.mesh, a.pace)
    else:
        result = tcp(a.kind, _targets(a.targets), a.count, a.mesh, a.frame_mb, a.parallel)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
