"""Sending mail over SMTP: the only module that imports smtplib and email."""

from __future__ import annotations

import re
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, make_msgid, parseaddr

from ..settings import Settings

TIMEOUT_SECONDS = 20.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class MailError(Exception):
    """A failed send, described without addresses; permanent when retrying cannot help (5xx)."""

    def __init__(self, reason: str, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass(frozen=True)
class Mail:
    """One message to one recipient: plain text, and HTML as its alternative."""

    to: str
    subject: str
    text: str
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def one_line(text: str, limit: int = 200) -> str:
    """A header value: control characters and line breaks become spaces, runs of space one."""
    return " ".join(_CONTROL.sub(" ", text).split())[:limit]


def message(mail: Mail, sender: str) -> EmailMessage:
    """The MIME message; every header value is one line, so no value can add a header."""
    msg = EmailMessage(policy=SMTP)
    name, address = parseaddr(sender)
    msg["From"] = Address(display_name=one_line(name), addr_spec=address) if name else address
    msg["To"] = one_line(mail.to, 254)
    msg["Subject"] = one_line(mail.subject)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain=address.rpartition("@")[2] or None)
    msg["Auto-Submitted"] = "auto-generated"
    for key, value in mail.headers.items():
        msg[one_line(key, 60)] = one_line(value, 2000)
    msg.set_content(mail.text)
    if mail.html is not None:
        msg.add_alternative(mail.html, subtype="html")
    return msg


def _describe(exc: Exception) -> MailError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return MailError(f"recipient refused ({', '.join(map(str, codes))})", all(c >= 500 for c in codes))
    if isinstance(exc, smtplib.SMTPResponseException):
        return MailError(f"SMTP {exc.smtp_code}", exc.smtp_code >= 500)
    return MailError(type(exc).__name__)


def send(settings: Settings, mails: Sequence[Mail]) -> None:
    """Send over one SMTP session, as the settings say (STARTTLS, TLS or plain; login if a user is set)."""
    if not settings.smtp_host or not settings.mail_from:
        raise MailError("mail is not configured", permanent=True)
    context = ssl.create_default_context()
    try:
        if settings.smtp_security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.mail_port, timeout=TIMEOUT_SECONDS,
                                                  context=context)
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.mail_port, timeout=TIMEOUT_SECONDS)
        with smtp:
            if settings.smtp_security == "starttls":
                smtp.starttls(context=context)
            if settings.smtp_user:
                password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                smtp.login(settings.smtp_user, password)
            for mail in mails:
                smtp.send_message(message(mail, settings.mail_from))
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise _describe(exc) from None
