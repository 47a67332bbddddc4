"""A real SMTP server on 127.0.0.1 for tests (aiosmtpd in a thread).

Use the ``smtp_server`` fixture (bring it into a test module or a conftest)::

    from tests import smtp as smtp_fixtures

    smtp_server = smtp_fixtures.smtp_server

    def test_send(smtp_server):
        smtp_server.restart(tls="starttls", auth={"digest": "secret"})
        smtp_server.refuse.add("nobody@example.org")
        ...
        (received,) = smtp_server.received
        msg = received.message()

The server records every accepted message as :class:`Received`, refuses the addresses in
``refuse`` with 550, and can be stopped and started again on the same port ("down then up").
It stops by itself at teardown.
"""

from __future__ import annotations

import socket
import ssl
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPProtocol
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

Tls = Literal["none", "starttls", "ssl"]


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def message(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class _Handler:
    refuse: set[str]
    received: list[Received]
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self,
        server: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if address.lower() in {a.lower() for a in self.refuse}:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or envelope.content or b""
        assert isinstance(data, bytes)
        with self.lock:
            self.received.append(
                Received(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=data,
                )
            )
        return "250 2.0.0 Message accepted"


class SmtpServer:
    """One aiosmtpd server; :meth:`restart` changes TLS and AUTH, keeping the port."""

    host = "127.0.0.1"

    def __init__(self, certs: Path) -> None:
        self.port = _free_port()
        self.refuse: set[str] = set()
        self.received: list[Received] = []
        self.tls: Tls = "none"
        self.auth: Mapping[str, str] | None = None
        self.logins: list[str] = []
        self._certs = certs
        self._ca: trustme.CA | None = None
        self._controller: Controller | None = None

    @property
    def ca_file(self) -> Path:
        """PEM of the CA that signed the server certificate (trust it in the client)."""
        self._authority()
        return self._certs / "ca.pem"

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        if self._controller is not None:
            return
        # The handler shares the set and the list, so later changes apply at once.
        handler = _Handler(refuse=self.refuse, received=self.received)
        kwargs: dict[str, Any] = {"hostname": self.host, "port": self.port, "ready_timeout": 5.0}
        if self.tls == "starttls":
            kwargs["tls_context"] = self._server_context()
            kwargs["require_starttls"] = True
        elif self.tls == "ssl":
            kwargs["ssl_context"] = self._server_context()
        if self.auth is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            kwargs["auth_require_tls"] = self.tls != "none"
        controller = _QuietController(handler, **kwargs)
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart(
        self, *, tls: Tls | None = None, auth: Mapping[str, str] | None | Literal[False] = False
    ) -> None:
        """Stop, change the TLS mode and/or the accepted logins (``None``: no AUTH), start."""
        self.stop()
        if tls is not None:
            self.tls = tls
        if auth is not False:
            self.auth = dict(auth) if auth is not None else None
        self.start()

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def _authenticate(
        self,
        server: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.auth is not None:
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if self.auth.get(login) == password:
                self.logins.append(login)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def _authority(self) -> trustme.CA:
        if self._ca is None:
            self._ca = trustme.CA()
            self._certs.mkdir(parents=True, exist_ok=True)
            self._ca.cert_pem.write_to_path(str(self._certs / "ca.pem"))
        return self._ca

    def _server_context(self) -> ssl.SSLContext:
        cert = self._authority().issue_cert("127.0.0.1", "localhost")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(context)
        return context


class _QuietController(Controller):
    """aiosmtpd warns on every connection when AUTH is allowed without TLS, which plain-text
    tests want; under ``filterwarnings = error`` that warning would break the session."""

    def factory(self) -> SMTPProtocol:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return super().factory()  # type: ignore[no-untyped-call,no-any-return]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def smtp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    """A running plain SMTP server on 127.0.0.1 (no TLS, no AUTH); stopped at teardown."""
    server = SmtpServer(tmp_path_factory.mktemp("smtp-certs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
