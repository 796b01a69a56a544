"""HTTPS for the room server: a given certificate, or a self-signed one made on first start.

Browsers allow camera and microphone only on secure origins (``https://``, or
``localhost``), so a person on the LAN reaches the web page over HTTPS. With no
certificate given, :func:`self_signed_certificate` makes one in the state directory
with the ``openssl`` command (Debian package ``openssl``) or, when that is missing, the
``cryptography`` package, and reuses it on later starts. It is its own authority
(``CA:TRUE``), so it can be imported as a trusted authority on the devices that open
the page (docs/web.md says how); :func:`fingerprint` is what a person compares with
what the browser shows before trusting it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import EdgedError, ErrorCode
from ..logs import log_event
from .settings import ServerSettings

log = logging.getLogger("edged.server")

CERT_NAME = "edged-web.crt"
KEY_NAME = "edged-web.key"
META_NAME = "edged-web.json"
VALID_DAYS = 825  # the longest validity Apple devices accept for a user-trusted certificate
RENEW_BEFORE_S = 30 * 86400


StrPath = str | os.PathLike[str]


def ssl_context(cert_file: StrPath, key_file: StrPath) -> ssl.SSLContext:
    """A server context for the PEM certificate (chain) and its private key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(os.fspath(cert_file), os.fspath(key_file))
    except (OSError, ssl.SSLError) as exc:
        raise EdgedError(
            ErrorCode.TLS_CERTIFICATE_INVALID, f"{cert_file} / {key_file}: {exc}"
        ) from None
    return context


def server_ssl_context(settings: ServerSettings) -> ssl.SSLContext | None:
    """The context to serve HTTPS with, or None for plain HTTP (no certificate set)."""
    if not settings.cert_file and not settings.key_file:
        return None
    if not settings.cert_file or not settings.key_file:
        raise EdgedError(
            ErrorCode.TLS_CERTIFICATE_INVALID, "HTTPS needs both a certificate and its key"
        )
    return ssl_context(settings.cert_file, settings.key_file)


def default_names(host: str = "") -> list[str]:
    """The names a self-signed certificate covers: this machine's names, and ``host``.

    ``HOSTNAME``, ``HOSTNAME.local`` (mDNS, as Raspberry Pi OS announces it), the fully
    qualified name, ``localhost`` and the loopback addresses; ``host`` when it is a
    specific address or name (not a wildcard such as ``0.0.0.0``).
    """
    hostname = socket.gethostname()
    names = [hostname, f"{hostname.split('.')[0]}.local", socket.getfqdn(), "localhost"]
    names += ["127.0.0.1", "::1"]
    if host and host not in ("0.0.0.0", "::", "*"):
        names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def certificate_files(
    cert_file: str | None, key_file: str | None, self_signed: bool, state_dir: Path, host: str
) -> tuple[str | None, str | None]:
    """The certificate and key to serve HTTPS with: those given, else (``self_signed``)
    one made in ``state_dir/tls`` for this machine's names and ``host``, else none.
    """
    if cert_file or key_file:
        ssl_context(cert_file or "", key_file or "")  # refuse a broken pair before starting
        return cert_file, key_file
    if not self_signed:
        return None, None
    cert, key = self_signed_certificate(state_dir / "tls", default_names(host))
    return str(cert), str(key)


def self_signed_certificate(directory: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """The certificate and key files in ``directory``, made when absent or outdated.

    A certificate made earlier is reused while it covers ``names`` and has more than 30
    days left, so that a person trusts it once. The key file is readable by its owner
    only.
    """
    cert, key, meta = directory / CERT_NAME, directory / KEY_NAME, directory / META_NAME
    if _reusable(cert, key, meta, names):
        return cert, key
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".new-") as tmp:
        new_cert, new_key = Path(tmp) / CERT_NAME, Path(tmp) / KEY_NAME
        if shutil.which("openssl"):
            _make_with_openssl(new_cert, new_key, names)
        else:
            _make_with_cryptography(new_cert, new_key, names)
        os.chmod(new_key, 0o600)
        os.chmod(new_cert, 0o644)
        os.replace(new_key, key)
        os.replace(new_cert, cert)
    not_after = time.time() + VALID_DAYS * 86400
    meta.write_text(json.dumps({"names": list(names), "not_after": not_after}) + "\n")
    log_event(
        log,
        logging.INFO,
        "self_signed_certificate_created",
        file=str(cert),
        names=",".join(names),
        sha256=fingerprint(cert),
    )
    return cert, key


def _reusable(cert: Path, key: Path, meta: Path, names: Iterable[str]) -> bool:
    try:
        info = json.loads(meta.read_text())
        covered = set(info["names"])
        not_after = float(info["not_after"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if not cert.is_file() or not key.is_file():
        return False
    return set(names) <= covered and not_after - time.time() > RENEW_BEFORE_S


def _split_names(names: Sequence[str]) -> tuple[list[str], list[str]]:
    dns: list[str] = []
    ips: list[str] = []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return dns, ips


def _common_name(names: Sequence[str]) -> str:
    return f"edged {names[0] if names else 'web'}"[:64]


def _make_with_openssl(cert: Path, key: Path, names: Sequence[str]) -> None:
    dns, ips = _split_names(names)
    san = ",".join([f"DNS:{n}" for n in dns] + [f"IP:{a}" for a in ips])
    command = [
        "openssl", "req", "-x509", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-sha256", "-nodes",
        "-days", str(VALID_DAYS), "-keyout", str(key), "-out", str(cert),
        "-subj", f"/CN={_common_name(names)}",
        "-addext", f"subjectAltName={san}",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext", "extendedKeyUsage=serverAuth",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise EdgedError(
            ErrorCode.TLS_CERTIFICATE_INVALID, f"openssl: {result.stderr.strip()[-300:]}"
        )


def _make_with_cryptography(cert_path: Path, key_path: Path, names: Sequence[str]) -> None:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise EdgedError(
            ErrorCode.TLS_CERTIFICATE_INVALID,
            "cannot make a certificate: install openssl (or the python cryptography package)",
        ) from None
    dns, ips = _split_names(names)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _common_name(names))])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _certificate_der(cert_file: StrPath) -> bytes:
    try:
        text = Path(cert_file).read_text()
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
        return ssl.PEM_cert_to_DER_cert(text[start:end])
    except (OSError, ValueError) as exc:
        raise EdgedError(ErrorCode.TLS_CERTIFICATE_INVALID, f"{cert_file}: {exc}") from None


def fingerprint(cert_file: StrPath) -> str:
    """The certificate's SHA-256 fingerprint as browsers show it (``AB:CD:...``)."""
    digest = hashlib.sha256(_certificate_der(cert_file)).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def _der_element(data: bytes, offset: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER element at ``offset``."""
    tag, length = data[offset], data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    return tag, offset, offset + length


def spki_sha256(cert_file: StrPath) -> str:
    """Base64 SHA-256 of the certificate's public key (SubjectPublicKeyInfo).

    The value Chromium's ``--ignore-certificate-errors-spki-list`` takes, e.g. for a
    kiosk browser that should accept exactly this server's key.
    """
    der = _certificate_der(cert_file)
    with contextlib.suppress(IndexError):
        _, cert_body, _ = _der_element(der, 0)  # Certificate
        _, pos, _ = _der_element(der, cert_body)  # tbsCertificate
        if der[pos] == 0xA0:  # explicit version
            pos = _der_element(der, pos)[2]
        for _ in range(5):  # serial, signature algorithm, issuer, validity, subject
            pos = _der_element(der, pos)[2]
        _, _, end = _der_element(der, pos)
        return base64.b64encode(hashlib.sha256(der[pos:end]).digest()).decode()
    raise EdgedError(ErrorCode.TLS_CERTIFICATE_INVALID, f"{cert_file}: not a certificate")
