"""Certificates for the dev cluster: a CA, the apiserver's serving certificate, client
certificates, and the service-account signing key pair. ECDSA P-256 throughout (fast to
generate; supported by kube-apiserver for TLS and for service-account tokens)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = dt.timedelta(days=365)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def pub_pem(key) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def make_ca(cn: str = "dgm-dev-cluster-ca"):
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY * 10)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def issue(ca_key, ca_cert, cn: str, *, orgs: tuple[str, ...] = (), server: bool = False,
          dns: tuple[str, ...] = (), ips: tuple[str, ...] = ()):
    """A leaf certificate signed by the CA: client auth, plus server auth with SANs if server."""
    key = _key()
    now = dt.datetime.now(dt.timezone.utc)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if server else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if server:
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


@dataclass
class PKI:
    """Paths of the files written by `ensure_pki`."""

    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    @property
    def ca_crt(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def sa_key(self) -> Path:
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.dir / "sa.pub"

    def crt(self, who: str) -> Path:
        return self.dir / f"{who}.crt"

    def key(self, who: str) -> Path:
        return self.dir / f"{who}.key"


# who -> (common name, organisations)
CLIENTS = {
    "admin": ("dgm-admin", ("system:masters",)),
    "controller-manager": ("system:kube-controller-manager", ("system:masters",)),
    "apiserver-etcd-client": ("kube-apiserver", ()),
}


# Identities of the real node's components (realnode.py): who -> (common name, organisations)
NODE_CLIENTS = {
    # the API server's client certificate towards the kubelet (logs, exec, port-forward)
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", ("system:masters",)),
    "kube-scheduler": ("system:kube-scheduler", ()),
    "kube-proxy": ("system:kube-proxy", ()),
    "kube-router": ("system:kube-router", ()),
}


def node_client_name(node_name: str) -> tuple[str, tuple[str, ...]]:
    """The kubelet's identity: the Node authorizer and NodeRestriction key on it."""
    return f"system:node:{node_name}", ("system:nodes",)


def ensure_node_pki(pki: PKI, node_name: str, node_ip: str) -> PKI:
    """Certificates of the real node, issued by the cluster CA once: the kubelet's client
    (system:node:<name>) and serving certificates, and the control-plane clients that
    talk to it or run beside it."""
    marker = pki.dir / ".node-complete"
    if marker.exists():
        return pki
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    cn, orgs = node_client_name(node_name)
    issued = {"kubelet-client": issue(ca_key, ca_cert, cn, orgs=orgs),
              "kubelet-serving": issue(ca_key, ca_cert, cn, orgs=orgs, server=True,
                                       dns=(node_name, "localhost"), ips=(node_ip, "127.0.0.1"))}
    for who, (cn, orgs) in NODE_CLIENTS.items():
        issued[who] = issue(ca_key, ca_cert, cn, orgs=orgs)
    for who, (key, cert) in issued.items():
        _write(pki.key(who), key_pem(key), private=True)
        _write(pki.crt(who), cert_pem(cert))
    marker.write_text("")
    return pki


def ensure_pki(directory: Path, service_ip: str, extra_ips: tuple[str, ...] = ()) -> PKI:
    """Write the CA, certificates and service-account keys once; reuse existing files.
    ``extra_ips`` are more addresses the API server is reached on (the real node's)."""
    pki = PKI(Path(directory))
    pki.dir.mkdir(parents=True, exist_ok=True)
    if (pki.dir / ".complete").exists():
        return pki
    ca_key, ca_cert = make_ca()
    _write(pki.ca_key, key_pem(ca_key), private=True)
    _write(pki.ca_crt, cert_pem(ca_cert))
    key, cert = issue(
        ca_key, ca_cert, "kube-apiserver", server=True,
        dns=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"),
        ips=("127.0.0.1", service_ip, *extra_ips),
    )
    _write(pki.key("apiserver"), key_pem(key), private=True)
    _write(pki.crt("apiserver"), cert_pem(cert))
    for who, (cn, orgs) in CLIENTS.items():
        key, cert = issue(ca_key, ca_cert, cn, orgs=orgs)
        _write(pki.key(who), key_pem(key), private=True)
        _write(pki.crt(who), cert_pem(cert))
    sa = _key()
    _write(pki.sa_key, key_pem(sa), private=True)
    _write(pki.sa_pub, pub_pem(sa))
    (pki.dir / ".complete").write_text("")
    return pki


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()
