"""The dev cluster's DNS stand-in (devtools/dgm_dev/devcluster/clusterdns.py): wire format
and the Service table, without sockets."""

from __future__ import annotations

import socket
import struct

from dgm_dev.devcluster.clusterdns import RCODE_NXDOMAIN, RCODE_REFUSED, answer, query, service_records

DOMAIN = "cluster.local"
SERVICES = [
    {"metadata": {"name": "kubernetes", "namespace": "default"}, "spec": {"clusterIP": "10.96.0.1"}},
    {"metadata": {"name": "llm-standin", "namespace": "t-1"}, "spec": {"clusterIPs": ["10.96.4.2"]}},
    {"metadata": {"name": "headless", "namespace": "t-1"}, "spec": {"clusterIP": "None"}},
]


def decode(reply: bytes) -> tuple[int, int, list[str]]:
    qid, flags, _, ancount = struct.unpack("!HHHH", reply[:8])
    # each answer is 16 bytes (name pointer, type, class, ttl, rdlength, address) at the end
    addrs = [socket.inet_ntoa(reply[len(reply) - 16 * (ancount - i) + 12:][:4]) for i in range(ancount)]
    return qid, flags & 0xF, addrs


def test_services_resolve_to_their_cluster_ip():
    records = service_records(SERVICES, DOMAIN)
    qid, rcode, addrs = decode(answer(query("kubernetes.default.svc.cluster.local"), records, DOMAIN))
    assert (qid, rcode, addrs) == (0x1234, 0, ["10.96.0.1"])
    _, rcode, addrs = decode(answer(query("LLM-Standin.t-1.svc.cluster.local"), records, DOMAIN))
    assert (rcode, addrs) == (0, ["10.96.4.2"])


def test_other_names_and_types():
    records = service_records(SERVICES, DOMAIN)
    # search-path expansions of a short name: not found, quickly
    assert decode(answer(query("llm-standin.t-1.svc.t-1.svc.cluster.local"), records, DOMAIN))[1] == RCODE_NXDOMAIN
    # a known name, no IPv6 address: NOERROR without answers
    assert decode(answer(query("kubernetes.default.svc.cluster.local", qtype=28), records, DOMAIN))[1:] == (0, [])
    # a headless Service has no address here
    assert decode(answer(query("headless.t-1.svc.cluster.local"), records, DOMAIN))[1:] == (0, [])
    # outside the cluster domain: refused (pods cannot reach beyond the machine anyway)
    assert decode(answer(query("pypi.org"), records, DOMAIN))[1] == RCODE_REFUSED
    # garbage gets FORMERR, not an exception
    assert answer(b"\x00\x07\x01", records, DOMAIN)[:2] == b"\x00\x07"
