"""The digest message (pure) and its delivery over SMTP or to the outbox folder (I/O).

The Message-ID is derived from the list and the period, never from the clock, so a digest that
is sent again after a crash carries the same id and receivers can drop the copy. Header values
never contain feed text verbatim: every value passes through :func:`header_text`, and the
email package encodes what is left. smtplib, ssl and OSError are translated into SendError here
and nowhere else.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

from digest.errors import SendError
from digest.fsutil import atomic_write
from digest.periods import (
    DigestListSettings,
    Period,
    SmtpSettings,
    parse_address,
    subject_values,
)

log = logging.getLogger(__name__)

UNDISCLOSED = "undisclosed-recipients:;"
#: From header when neither the list nor [smtp] names one (outbox-only setups)
FALLBACK_FROM = "caucasus-digest@localhost.localdomain"
SUBJECT_LIMIT = 200
_HEADER_JUNK = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]+")
_SPACES = re.compile(r"\s+")
_LIST_ID_SPECIALS = re.compile(r"[\"<>()\[\],;:\\@]")
_MESSAGE_ID = re.compile(r"^<digest\.([a-z0-9-]+)\.([0-9A-Za-z-]+)@[^>]+>$")
#: the serialisation used on the wire and in .eml files
WIRE_POLICY = policy.SMTP


# -- building the message (pure) -------------------------------------------------------------


def header_text(value: str, limit: int = SUBJECT_LIMIT) -> str:
    """One safe header line: no CR/LF or other controls, spaces collapsed, length capped."""
    text = _SPACES.sub(" ", _HEADER_JUNK.sub(" ", value)).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def message_id(list_name: str, period_key: str, domain: str) -> str:
    """``<digest.{list}.{period}@{domain}>``: the same for every send of one period."""
    return f"<digest.{list_name}.{period_key}@{domain}>"


def sender(settings: DigestListSettings, smtp: SmtpSettings | None) -> str:
    """The From header: the list's own address, else [smtp] from_address."""
    if settings.from_address:
        return settings.from_address
    if smtp is not None:
        return smtp.from_address
    return FALLBACK_FROM


def message_domain(settings: DigestListSettings, smtp: SmtpSettings | None) -> str:
    if smtp is not None:
        return smtp.domain
    address = parse_address(sender(settings, None))
    return address.domain.lower() if address else "localhost.localdomain"


def build_subject(settings: DigestListSettings, period: Period, count: int) -> str:
    values = subject_values(
        title=header_text(settings.title),
        date=period.date,
        count=count,
        list_name=settings.name,
        period=period.key,
    )
    return header_text(settings.subject.format(**values))


def build_message(
    html: str,
    text: str,
    *,
    period: Period,
    settings: DigestListSettings,
    smtp: SmtpSettings | None,
    story_count: int,
    now: dt.datetime,
) -> EmailMessage:
    """A multipart/alternative message: text/plain first, then text/html, UTF-8 throughout.

    With ``settings.bcc`` the recipients are left out of the headers (they go only into the
    envelope, see :func:`send_message`) and To shows ``undisclosed-recipients:;``.
    """
    domain = message_domain(settings, smtp)
    msg = EmailMessage(policy=policy.default)
    msg["Subject"] = build_subject(settings, period, story_count)
    msg["From"] = sender(settings, smtp)
    msg["To"] = UNDISCLOSED if settings.bcc else ", ".join(settings.recipients)
    msg["Date"] = format_datetime(now.astimezone(settings.zone))
    msg["Message-ID"] = message_id(settings.name, period.key, domain)
    list_title = _LIST_ID_SPECIALS.sub("", header_text(settings.title, 100)).strip()
    msg["List-Id"] = f"{list_title} <{settings.name}.{domain}>".strip()
    unsubscribe = _unsubscribe_links(settings)
    if unsubscribe:
        msg["List-Unsubscribe"] = ", ".join(unsubscribe)
        if settings.unsubscribe_url:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "bulk"
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg


def _unsubscribe_links(settings: DigestListSettings) -> list[str]:
    links: list[str] = []
    if settings.unsubscribe_mailto:
        address = parse_address(settings.unsubscribe_mailto)
        if address is not None:
            links.append(f"<mailto:{address.addr_spec}?subject=unsubscribe>")
    if settings.unsubscribe_url and not _HEADER_JUNK.search(settings.unsubscribe_url):
        links.append(f"<{settings.unsubscribe_url}>")
    return links


# -- delivery (I/O) --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendOutcome:
    """What happened to one message. A total failure is a SendError, not an outcome."""

    #: recipients the server (or the outbox) took
    accepted: tuple[str, ...]
    #: recipient -> "code reply" for those the server refused
    refused: Mapping[str, str] = field(default_factory=dict)
    transport: Literal["smtp", "outbox"]
    message_id: str
    #: the .eml file written (outbox only)
    path: Path | None = None


def send_message(
    msg: EmailMessage,
    recipients: Sequence[str],
    settings: SmtpSettings | None,
    *,
    outbox_dir: Path,
) -> SendOutcome:
    """Deliver over SMTP, or write ``<list>-<period>.eml`` to ``outbox_dir`` when ``settings``
    is None. Blocking: call it from async code through :func:`asend_message`."""
    envelope = [_addr_spec(r) for r in recipients]
    if not envelope:
        raise SendError("the message has no recipients; add recipients to the digest list")
    if settings is None:
        return _to_outbox(msg, envelope, outbox_dir)
    return _over_smtp(msg, envelope, settings)


async def asend_message(
    msg: EmailMessage,
    recipients: Sequence[str],
    settings: SmtpSettings | None,
    *,
    outbox_dir: Path,
) -> SendOutcome:
    """:func:`send_message` in a worker thread, so the event loop keeps running."""
    return await asyncio.to_thread(send_message, msg, recipients, settings, outbox_dir=outbox_dir)


def outbox_name(msg: EmailMessage) -> str:
    """``<list>-<period>.eml`` from the Message-ID; a resend replaces the same file."""
    mid = str(msg.get("Message-ID", ""))
    match = _MESSAGE_ID.match(mid)
    if match:
        return f"{match.group(1)}-{match.group(2)}.eml"
    safe = re.sub(r"[^A-Za-z0-9.-]+", "_", mid).strip("._") or "message"
    return f"{safe[:100]}.eml"


def _to_outbox(msg: EmailMessage, envelope: list[str], outbox_dir: Path) -> SendOutcome:
    path = outbox_dir / outbox_name(msg)
    try:
        atomic_write(path, msg.as_bytes(policy=WIRE_POLICY), only_if_changed=False)
    except OSError as exc:
        raise SendError(
            f"cannot write the digest to the outbox {path}: check that the folder is writable"
        ) from exc
    log.info("digest written to outbox path=%s message_id=%s", path, msg["Message-ID"])
    return SendOutcome(
        accepted=tuple(envelope),
        transport="outbox",
        message_id=str(msg["Message-ID"]),
        path=path,
    )


def _over_smtp(msg: EmailMessage, envelope: list[str], settings: SmtpSettings) -> SendOutcome:
    server = f"{settings.host}:{settings.port}"
    password = _password(settings)
    mail_from = _addr_spec(settings.from_address)
    try:
        context = _tls_context(settings)
        client = _connect(settings, context)
        with client:
            if settings.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if settings.username is not None and password is not None:
                client.login(settings.username, password)
            refused_raw = client.send_message(msg, from_addr=mail_from, to_addrs=envelope)
    except smtplib.SMTPRecipientsRefused as exc:
        refused = _reasons(exc.recipients)
        raise SendError(
            f"the SMTP server {server} refused every recipient; check the addresses",
            refused=refused,
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        raise SendError(
            f"the SMTP server {server} refused the login of {settings.username!r} "
            f"({exc.smtp_code}); check [smtp] username and the variable {settings.password_env}"
        ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SendError(
            f"the SMTP server {server} does not support what we asked ({exc}); "
            'check [smtp] security ("starttls", "ssl" or "none") and username'
        ) from None
    except smtplib.SMTPSenderRefused as exc:
        if exc.smtp_code == 530:
            raise SendError(
                f"the SMTP server {server} wants authentication or STARTTLS first "
                f"({_text(exc.smtp_error)}); check [smtp] security, username and password_env"
            ) from None
        raise SendError(
            f"the SMTP server {server} refused the sender {exc.sender} "
            f"({exc.smtp_code} {_text(exc.smtp_error)}); check [smtp] from_address"
        ) from None
    except smtplib.SMTPResponseException as exc:
        raise SendError(
            f"the SMTP server {server} refused the message "
            f"({exc.smtp_code} {_text(exc.smtp_error)}); it will be retried"
        ) from None
    except ssl.SSLError as exc:
        raise SendError(
            f"TLS with the SMTP server {server} failed ({exc.reason or exc}); check [smtp] "
            'security ("ssl" for port 465, "starttls" for 587) and ca_file'
        ) from None
    except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        raise SendError(
            f"the SMTP server {server} did not answer in time or closed the connection "
            f"({type(exc).__name__}); it will be retried"
        ) from None
    except smtplib.SMTPException as exc:
        raise SendError(f"sending through the SMTP server {server} failed: {exc}") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SendError(
            f"cannot connect to the SMTP server {server} ({reason}); check [smtp] host and "
            "port and that the server is running; the digest will be retried"
        ) from None
    refused = _reasons(refused_raw)
    accepted = tuple(r for r in envelope if r not in refused)
    log.info(
        "digest sent server=%s message_id=%s accepted=%d refused=%d",
        server,
        msg["Message-ID"],
        len(accepted),
        len(refused),
    )
    return SendOutcome(
        accepted=accepted,
        refused=refused,
        transport="smtp",
        message_id=str(msg["Message-ID"]),
    )


def _connect(settings: SmtpSettings, context: ssl.SSLContext | None) -> smtplib.SMTP:
    helo = settings.helo_name
    if settings.security == "ssl":
        return smtplib.SMTP_SSL(
            settings.host,
            settings.port,
            local_hostname=helo,
            timeout=settings.timeout,
            context=context,
        )
    return smtplib.SMTP(settings.host, settings.port, local_hostname=helo, timeout=settings.timeout)


def _tls_context(settings: SmtpSettings) -> ssl.SSLContext | None:
    if settings.security == "none":
        return None
    cafile = str(settings.ca_file) if settings.ca_file else None
    return ssl.create_default_context(cafile=cafile)


def _password(settings: SmtpSettings) -> str | None:
    if settings.password_env is None:
        return None
    value = os.environ.get(settings.password_env)
    if not value:
        raise SendError(
            f"the environment variable {settings.password_env} (named by [smtp] password_env) "
            "is not set; export the SMTP password in it"
        )
    return value


def _addr_spec(value: str) -> str:
    address = parse_address(value)
    if address is None:
        raise SendError(f"{header_text(value, 100)!r} is not an email address")
    return address.addr_spec


def _reasons(raw: Mapping[str, tuple[int, bytes]]) -> dict[str, str]:
    return {addr: f"{code} {_text(reply)}".strip() for addr, (code, reply) in raw.items()}


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return header_text(text, 300)


__all__ = [
    "SendOutcome",
    "asend_message",
    "build_message",
    "build_subject",
    "header_text",
    "message_id",
    "outbox_name",
    "send_message",
]
