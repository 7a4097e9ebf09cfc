"""A real SMTP server on loopback for the tests (aiosmtpd, in a thread of its own): plain,
STARTTLS or implicit TLS, with or without AUTH, recording every message it accepts and every login
it was offered. Its certificate is signed by a throw-away CA made here with ``cryptography``, so a
client trusts it only when told to (``IDSYNC_SMTP_CA_FILE``) — as with an operator's private CA.
"""

from __future__ import annotations

import datetime
import email
import email.policy
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Certificates:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificates(directory: Path) -> Certificates:
    """A CA, and a certificate it signed for 127.0.0.1 and localhost (EC keys: made in milliseconds)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity-sync test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "smtp.test")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    result = Certificates(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    result.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    result.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    result.key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return result


@dataclass(frozen=True)
class Received:
    """One accepted message: the envelope, and the message as a recipient's client parses it."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    #: Whether the session was encrypted (STARTTLS or implicit TLS) when the message came.
    encrypted: bool


@dataclass
class Recorder:
    """The server's handler: keeps what it accepts; ``logins`` are the (user, password) pairs offered."""

    messages: list[Received] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    #: Recipients the server answers "550 no such user".
    unknown: set[str] = field(default_factory=set)

    async def handle_RCPT(self, server: SMTPServer, session: Session, envelope: Envelope, address: str,
                          options: list[str]) -> str:
        if address in self.unknown:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        # session.ssl is set by STARTTLS; an implicit-TLS connection shows on the transport.
        encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.messages.append(Received(str(envelope.mail_from), [str(to) for to in envelope.rcpt_tos], parsed,
                                      encrypted))
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    port: int
    recorder: Recorder
    controller: Controller

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; a test binds it right after)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def smtp_server(security: Literal["starttls", "tls", "none"] = "none", *, certificates: Certificates | None = None,
                credentials: tuple[str, str] | None = None, port: int | None = None) -> Iterator[SmtpServer]:
    """A server speaking ``security``; with ``credentials``, AUTH is required, and offered only
    over TLS (aiosmtpd's default, as real servers do)."""
    recorder = Recorder()
    options: dict[str, Any] = {"server_hostname": "smtp.test"}
    if security != "none":
        assert certificates is not None, "TLS needs certificates"
        if security == "tls":
            options["ssl_context"] = certificates.server_context()
        else:
            options.update(tls_context=certificates.server_context(), require_starttls=True)
    if credentials is not None:
        def authenticate(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str,
                         data: Any) -> AuthResult:
            assert isinstance(data, LoginPassword)
            offered = (data.login.decode(), data.password.decode())
            recorder.logins.append(offered)
            # handled=False: the server answers a failure with its own 535 (True would leave it to us).
            return AuthResult(success=offered == credentials, handled=False)

        options.update(authenticator=authenticate, auth_required=True, auth_require_tls=True)
    controller = Controller(recorder, hostname=HOST, port=port or free_port(), **options)
    controller.start()
    try:
        yield SmtpServer(controller.port, recorder, controller)
    finally:
        controller.stop()
