"""TLS for the WebXR page: a self-signed certificate made on first use, or the user's own.

Browsers only offer WebXR to secure contexts, so a headset on the LAN needs HTTPS. The certificate
(EC P-256, valid one year, subject alternative names for ``localhost``, the host name and the
addresses the server is reached at) is stored in ``$XDG_CACHE_HOME/recon/viewer/`` (by default
``~/.cache/recon/viewer/cert.pem`` and ``key.pem``, key mode 0600) and reused while it is valid and
covers the addresses asked for; otherwise it is replaced. Users trust it once per device (the
browser shows its SHA-256 fingerprint, which ``recon view`` prints).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from recon.errors import ReconError


@dataclass
class Certificate:
    cert: Path
    key: Path
    fingerprint: str
    """SHA-256 of the DER certificate, as colon-separated upper-case hex (how browsers show it)."""
    generated: bool = False

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(str(self.cert), str(self.key))
        except (ssl.SSLError, OSError) as e:
            raise ReconError(f"cannot use certificate {self.cert} with key {self.key}: {e}") from e
        return ctx


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/recon/viewer`` (default ``~/.cache/recon/viewer``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recon" / "viewer"


def local_addresses() -> list[str]:
    """This machine's non-loopback IPv4 addresses (no packets are sent)."""
    addrs: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addrs.add(info[4][0])
    except OSError:
        pass
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # UDP connect only picks a route; nothing is sent
            addrs.add(s.getsockname()[0])
    except OSError:
        pass
    return sorted(a for a in addrs if not a.startswith("127."))


def load_certificate(cert: Path, key: Path) -> Certificate:
    """A user-supplied PEM certificate and key."""
    from cryptography import x509

    for p in (cert, key):
        if not Path(p).is_file():
            raise ReconError(f"certificate file {p} does not exist")
    try:
        c = x509.load_pem_x509_certificate(Path(cert).read_bytes())
    except ValueError as e:
        raise ReconError(f"{cert} is not a PEM certificate: {e}") from e
    out = Certificate(Path(cert), Path(key), fingerprint(c))
    out.ssl_context()  # fail now, with the file names, if the key does not match
    return out


def certificate_names(cert: Path) -> list[str]:
    """The DNS names and IP addresses a PEM certificate's subject alternative names cover."""
    from cryptography import x509

    try:
        c = x509.load_pem_x509_certificate(Path(cert).read_bytes())
        san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return []
    return ([str(v) for v in san.get_values_for_type(x509.DNSName)]
            + [str(v) for v in san.get_values_for_type(x509.IPAddress)])


def fingerprint(cert) -> str:
    from cryptography.hazmat.primitives import hashes

    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def ensure_self_signed(hosts: list[str], folder: Path | None = None) -> Certificate:
    """The cached self-signed certificate if valid for ``hosts`` (names or IPs); else a new one."""
    from cryptography import x509

    folder = Path(folder) if folder else cache_dir()
    cert_p, key_p = folder / "cert.pem", folder / "key.pem"
    want = {h for h in hosts if h and h not in ("0.0.0.0", "::")} | {"localhost", "127.0.0.1"}
    if cert_p.is_file() and key_p.is_file():
        try:
            c = x509.load_pem_x509_certificate(cert_p.read_bytes())
            san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
            have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
            fresh = c.not_valid_after_utc > dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
            if fresh and want <= have:
                return Certificate(cert_p, key_p, fingerprint(c))
            want |= have  # keep serving the names it already covered
        except (ValueError, x509.ExtensionNotFound):
            pass
    return _generate(sorted(want), cert_p, key_p)


def _generate(hosts: list[str], cert_p: Path, key_p: Path) -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recon viewer (self-signed)")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    try:
        cert_p.parent.mkdir(parents=True, exist_ok=True)
        tmp_k = key_p.with_name(key_p.name + ".tmp")
        fd = os.open(tmp_k, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        tmp_c = cert_p.with_name(cert_p.name + ".tmp")
        tmp_c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        tmp_k.replace(key_p)
        tmp_c.replace(cert_p)
    except OSError as e:
        raise ReconError(f"cannot write the viewer's certificate to {cert_p.parent}: {e}; "
                         "pass --cert/--key or set XDG_CACHE_HOME to a writable folder") from e
    return Certificate(cert_p, key_p, fingerprint(cert), generated=True)
