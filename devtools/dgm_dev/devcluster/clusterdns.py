"""The dev cluster's DNS: `<service>.<namespace>.svc.cluster.local` -> the Service's ClusterIP.

A small stand-in for CoreDNS, run by `dgm dev-cluster up` with the real node on the node's
bridge address (the kubelet's clusterDNS), so pods find Services by name as on any cluster.
It answers A queries for Services with a ClusterIP (headless Services have no address here),
NXDOMAIN for other names under the cluster domain, and REFUSED for names outside it (pods
cannot reach beyond this machine anyway). The Service table is re-read from the API every
second.

    python -m dgm_dev.devcluster.clusterdns --listen 10.244.0.1:53 --server https://... \
        --ca ca.crt --cert admin.crt --key admin.key
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.request

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_NXDOMAIN, RCODE_REFUSED, RCODE_FORMERR = 3, 5, 1
TTL = 5


def query(name: str, qtype: int = TYPE_A, qid: int = 0x1234) -> bytes:
    """A recursive query for ``name`` (what a pod's resolver sends)."""
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, CLASS_IN)


def answer_count(reply: bytes) -> int:
    """How many answers a response holds."""
    return int(struct.unpack("!H", reply[6:8])[0])


def parse_question(packet: bytes) -> tuple[int, int, str, int, int, int]:
    """(id, flags, name, qtype, qclass, offset after the question) of a query."""
    if len(packet) < 12:
        raise ValueError("short packet")
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("one question expected")
    labels, i = [], 12
    while True:
        if i >= len(packet):
            raise ValueError("truncated name")
        n = packet[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed question name")
        labels.append(packet[i:i + n].decode("ascii", "replace").lower())
        i += n
    qtype, qclass = struct.unpack("!HH", packet[i:i + 4])
    return qid, flags, ".".join(labels), qtype, qclass, i + 4


def answer(packet: bytes, records: dict[str, list[str]], domain: str) -> bytes:
    """The response to one query packet."""
    try:
        qid, flags, name, qtype, qclass, end = parse_question(packet)
    except (ValueError, struct.error):
        qid = struct.unpack("!H", packet[:2])[0] if len(packet) >= 2 else 0
        return struct.pack("!HHHHHH", qid, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
    question = packet[12:end]
    rd = flags & 0x0100
    opcode = flags & 0x7800

    def reply(rcode: int, answers: list[str]) -> bytes:
        head = struct.pack("!HHHHHH", qid, 0x8000 | opcode | 0x0400 | rd | rcode, 1, len(answers), 0, 0)
        body = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + ipaddress.IPv4Address(a).packed
                        for a in answers)
        return head + question + body

    if name != domain and not name.endswith("." + domain):
        head = struct.pack("!HHHHHH", qid, 0x8000 | opcode | rd | RCODE_REFUSED, 1, 0, 0, 0)
        return head + question
    addrs = records.get(name)
    if addrs is None:
        return reply(RCODE_NXDOMAIN, [])
    return reply(0, addrs if qtype == TYPE_A and qclass == CLASS_IN else [])


def service_records(services: list[dict], domain: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for svc in services:
        meta, spec = svc["metadata"], svc.get("spec", {})
        ips = [ip for ip in spec.get("clusterIPs") or [spec.get("clusterIP")] if ip and ip != "None" and ":" not in ip]
        out[f"{meta['name']}.{meta['namespace']}.svc.{domain}"] = ips
    return out


class Resolver:
    def __init__(self, server: str, ctx: ssl.SSLContext, domain: str):
        self.server, self.ctx, self.domain = server.rstrip("/"), ctx, domain
        self.records: dict[str, list[str]] = {}
        self.ready = threading.Event()

    def refresh(self) -> None:
        with urllib.request.urlopen(f"{self.server}/api/v1/services", context=self.ctx, timeout=5) as r:
            self.records = service_records(json.loads(r.read())["items"], self.domain)
        self.ready.set()

    def loop(self, period: float = 1.0) -> None:
        while True:
            try:
                self.refresh()
            except Exception as e:  # the API server restarting, a timeout: keep the last table
                print(f"clusterdns: cannot list services: {e}", file=sys.stderr, flush=True)
            time.sleep(period)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clusterdns", description=__doc__.split("\n\n")[0])
    p.add_argument("--listen", required=True, help="address:port (the node's bridge address, port 53)")
    p.add_argument("--server", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--domain", default="cluster.local")
    p.add_argument("--state-dir", help="the dev cluster's state directory (only marks the process as its own)")
    args = p.parse_args(argv)
    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.load_cert_chain(args.cert, args.key)
    resolver = Resolver(args.server, ctx, args.domain.strip(".").lower())
    threading.Thread(target=resolver.loop, daemon=True).start()
    host, _, port = args.listen.rpartition(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, int(port)))
    resolver.ready.wait(30)
    print(f"clusterdns: serving {args.domain} on {args.listen}", file=sys.stderr, flush=True)
    while True:
        packet, peer = sock.recvfrom(4096)
        try:
            sock.sendto(answer(packet, resolver.records, resolver.domain), peer)
        except OSError:
            pass


if __name__ == "__main__":
    sys.exit(main())
