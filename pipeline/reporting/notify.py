"""Notifications for unattended runs: one message when a run wrote new outputs or needs attention.

``eetrend run`` sends a message when it exits 0 after a refit (new outputs) or exits 1
(needs attention), and never when it is waiting on Earth Engine (75) or found nothing to
do. Transports, any or all at once, from the ``[notify]`` table and ``run --notify URL``:

- an ntfy topic: HTTP POST, the message as plain text, ``Title``, ``Priority`` and
  ``Tags`` headers as ntfy documents (https://docs.ntfy.sh/publish/);
- a webhook: HTTP POST of a JSON object (``text`` holds the whole message, as Slack and
  Mattermost incoming webhooks expect, plus the fields one by one);
- email through SMTP (``smtplib``), STARTTLS by default, logging in with a password
  read from an environment variable named in the config.

A notification that fails is logged as a warning and changes nothing else: the run's
exit code is the study's state, not the messenger's. URLs are logged by host only (a
topic or webhook URL is a secret), and the password and tokens never reach a log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import EetrendError, UsageError
from ..years import format_years

if TYPE_CHECKING:
    from ..config import EmailSection, Study
    from ..run import RunResult

log = logging.getLogger(__name__)

EXIT_COMPLETE, EXIT_ATTENTION = 0, 1
HTTP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Message:
    """What happened to a study, ready for any transport."""

    study: str
    outcome: str  # "complete" (new outputs) or "attention"
    exit_code: int
    years: tuple[int, ...]
    report: str | None
    lines: tuple[str, ...] = field(default_factory=tuple)

    @property
    def title(self) -> str:
        what = "new trend outputs" if self.outcome == "complete" else "needs attention"
        return f"eetrend {self.study}: {what}"

    @property
    def body(self) -> str:
        state = "complete, new outputs written" if self.outcome == "complete" else "needs attention"
        text = [f"study {self.study}: {state} (exit {self.exit_code})",
                f"years: {format_years(self.years)} ({len(self.years)})",
                f"report: {self.report or 'none written yet'}"]
        return "\n".join(text + list(self.lines)) + "\n"

    @property
    def priority(self) -> str:
        """ntfy priority: 3 (default) for news, 4 (high) for a problem."""
        return "3" if self.outcome == "complete" else "4"

    @property
    def tags(self) -> str:
        """ntfy tags (emoji short codes)."""
        return "white_check_mark,eetrend" if self.outcome == "complete" else "warning,eetrend"

    def as_json(self) -> dict[str, Any]:
        return {"text": f"{self.title}\n{self.body}", "title": self.title, "study": self.study,
                "outcome": self.outcome, "exit_code": self.exit_code, "years": list(self.years),
                "report": self.report, "lines": list(self.lines)}


def message_for(study: Study, result: RunResult) -> Message | None:
    """The message a run's result deserves, or None (waiting, or complete with nothing new)."""
    if result.exit_code == EXIT_COMPLETE and result.fitted:
        outcome = "complete"
    elif result.exit_code == EXIT_ATTENTION:
        outcome = "attention"
    else:
        return None
    return Message(study.name, outcome, result.exit_code, tuple(study.years), _report(study, result.outputs),
                   tuple(result.lines))


def message_for_error(study: Study, error: EetrendError) -> Message | None:
    """A message for a run that stopped with an error needing attention (exit 1); None for other codes."""
    if error.exit_code != EXIT_ATTENTION:
        return None
    return Message(study.name, "attention", error.exit_code, tuple(study.years), _report(study, {}),
                   (f"error: {error}",))


def _report(study: Study, outputs: dict[str, Path]) -> str | None:
    """The HTML report if there is one, else the JSON report; an older one still on disk counts."""
    from ..study_outputs import output_paths

    known = {**output_paths(study), **outputs}
    for key in ("html", "report_html", "report"):
        path = known.get(key)
        if path is not None and Path(path).exists():
            return str(path)
    return None


@dataclass(frozen=True)
class Target:
    """One destination: a kind (ntfy, webhook, email), a description safe to log, and how to send."""

    kind: str
    label: str
    send: Callable[[Message], None]


def targets(study: Study, urls: Sequence[str] = ()) -> list[Target]:
    """Every destination of this study: the [notify] table plus ``--notify`` URLs (ntfy topics)."""
    settings = study.config.notify
    token_env = settings.token_env if settings is not None else None
    found: list[Target] = []
    for url in [*(u for u in [settings.ntfy if settings else None] if u), *urls]:
        found.append(Target("ntfy", f"ntfy topic on {_host(url)}",
                            lambda m, url=url: send_ntfy(url, m, token=_env(token_env))))
    if settings is not None and settings.webhook:
        url = settings.webhook
        found.append(Target("webhook", f"webhook on {_host(url)}",
                            lambda m: send_webhook(url, m, token=_env(token_env))))
    if settings is not None and settings.email is not None:
        email = settings.email
        found.append(Target("email", f"email via {email.host}:{email.port}",
                            lambda m: send_email(email, m, base=study.base)))
    return found


def notify(study: Study, message: Message | None, urls: Sequence[str] = ()) -> list[str]:
    """Send ``message`` everywhere; return the destinations that failed (each is logged, none raises)."""
    if message is None:
        return []
    failed = []
    for target in targets(study, urls):
        try:
            target.send(message)
        except Exception as exc:  # noqa: BLE001 - a messenger's failure must never change the run's outcome
            failed.append(target.label)
            log.warning("%s: notification by %s failed: %s", study.name, target.label,
                        _redact(str(exc), study, urls))
        else:
            log.info("%s: notified by %s (%s)", study.name, target.label, message.outcome)
    return failed


@contextmanager
def notifying(study: Study, urls: Sequence[str] = ()) -> Iterator[Callable[[RunResult], None]]:
    """Wrap a run: yields a function to call with the result; an exit-1 error is notified, then re-raised."""
    for url in urls:
        if not re.match(r"https?://[^\s/]+", url):
            raise UsageError("--notify must be an http:// or https:// URL of an ntfy topic")
    try:
        yield lambda result: notify(study, message_for(study, result), urls)
    except EetrendError as exc:
        notify(study, message_for_error(study, exc), urls)
        raise


def send_ntfy(url: str, message: Message, *, token: str | None = None) -> None:
    """POST the body as plain text with ntfy's Title, Priority and Tags headers."""
    headers = {"Title": message.title, "Priority": message.priority, "Tags": message.tags,
               "Content-Type": "text/plain; charset=utf-8"}
    _post(url, message.body.encode("utf-8"), headers, token)


def send_webhook(url: str, message: Message, *, token: str | None = None) -> None:
    """POST the message as one JSON object."""
    _post(url, json.dumps(message.as_json()).encode("utf-8"), {"Content-Type": "application/json"}, token)


def _post(url: str, data: bytes, headers: dict[str, str], token: str | None) -> None:
    if token:
        headers = {**headers, "Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from None


def send_email(settings: EmailSection, message: Message, *, base: Path | None = None) -> None:
    """Send through SMTP: STARTTLS (certificate checked) unless disabled, then log in if a user is set."""
    email = EmailMessage()
    email["Subject"] = message.title
    email["From"] = settings.sender
    email["To"] = ", ".join(settings.to)
    email["Date"] = formatdate(localtime=True)
    email["Message-ID"] = make_msgid(domain="eetrend")
    email.set_content(message.body)
    password = _env(settings.password_env) if settings.user else None
    if settings.user and password is None:
        raise OSError(f"the environment variable {settings.password_env} (notify.email.password_env) is not set")
    with smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout) as smtp:
        if settings.starttls:
            cafile = settings.cafile
            if cafile is not None and base is not None and not cafile.is_absolute():
                cafile = base / cafile
            smtp.starttls(context=ssl.create_default_context(cafile=str(cafile) if cafile else None))
        if settings.user:
            smtp.login(settings.user, password or "")
        smtp.send_message(email)


def _env(name: str | None) -> str | None:
    return os.environ.get(name) if name else None


def _host(url: str) -> str:
    """Scheme and host of a URL: the path of a topic or webhook URL is its secret."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"


def _redact(text: str, study: Study, urls: Sequence[str] = ()) -> str:
    """Remove every secret this study's notifications use from a message before it is logged."""
    settings = study.config.notify
    secrets: list[str | None] = list(urls)
    if settings is not None:
        secrets += [settings.ntfy, settings.webhook, _env(settings.token_env)]
        if settings.email is not None:
            secrets.append(_env(settings.email.password_env))
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
