"""Alert channels: e-mail (smtplib) and webhooks (urllib). Each returns the subjects it delivered;
a failing channel raises nothing past here, so it never stops the others or the jobs."""

from __future__ import annotations

import json
import logging
import os
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from email.message import EmailMessage

from .levels import Subject
from .settings import ChannelConfig, rank

log = logging.getLogger("certmgr.alerts")


class ChannelError(Exception):
    pass


def _secret(name: str, options: dict, key: str) -> str | None:
    """A secret from ``<key>_file`` (owner-only, see certmgr.secrets) or ``<key>_env``; never inline in certmgr.toml."""
    if options.get(f"{key}_file"):
        from ..errors import InputError
        from ..secrets import read_secret_file

        try:
            return read_secret_file(options[f"{key}_file"], f"{key}_file of channel {name}").decode("utf-8").strip()
        except InputError as exc:
            raise ChannelError(f"channel {name}: {exc.one_line()}") from None
        except UnicodeDecodeError:
            raise ChannelError(f"channel {name}: {key}_file {options[f'{key}_file']} is not UTF-8 text") from None
    if options.get(f"{key}_env"):
        return os.environ.get(options[f"{key}_env"])
    return None


def summary_line(alerts: list[tuple[Subject, str | None]]) -> str:
    worst = max((a.level for a, _ in alerts), key=rank)
    counts = {}
    for alert, _ in alerts:
        counts[alert.level] = counts.get(alert.level, 0) + 1
    parts = ", ".join(f"{counts[level]} {level}" for level in ("expired", "critical", "warning") if level in counts)
    return f"[certmgr] {worst.upper()}: {parts}"


def alert_text(alert: Subject, previous: str | None) -> str:
    what = f"CRL of {alert.name}" if alert.kind == "crl" else alert.name  # peers and probes are named by their endpoint
    change = f" (was {previous})" if previous and previous != alert.level else ""
    days = f"{alert.days_left:.1f} days left" if alert.days_left >= 0 else f"expired {-alert.days_left:.1f} days ago"
    thumb = f" [{alert.thumbprint}]" if alert.thumbprint else ""
    return f"{alert.level.upper()}{change}: {what}{thumb}, {days}, until {alert.not_after:%Y-%m-%d %H:%M} UTC; {alert.reason}"


class SmtpChannel:
    """One mail per run listing every subject that changed level; subject line with the worst level and counts."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        o = config.options
        self.host = o.get("host", "localhost")
        self.port = int(o.get("port", 465 if o.get("ssl") else 25))
        self.recipients = o.get("to") or []
        if isinstance(self.recipients, str):
            self.recipients = [self.recipients]
        self.sender = o.get("from", "certmgr@localhost")
        self.timeout = float(o.get("timeout", 10))

    def send(self, alerts: list[tuple[Subject, str | None]]) -> list[Subject]:
        if not self.recipients:
            raise ChannelError(f"channel {self.config.name}: no recipients (to = [...])")
        message = EmailMessage()
        message["Subject"] = summary_line(alerts)
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        lines = [alert_text(a, p) for a, p in alerts]
        message.set_content("\n".join(lines) + "\n\n-- certmgr\n")
        o = self.config.options
        password = (_secret(self.config.name, o, "password") or "") if o.get("username") else None  # before connecting
        try:
            if o.get("ssl"):
                client = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if o.get("starttls"):
                    client.starttls(context=ssl.create_default_context())
                if o.get("username"):
                    client.login(o["username"], password)
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(f"channel {self.config.name}: SMTP {self.host}:{self.port}: {exc}") from exc
        return [a for a, _ in alerts]


class WebhookChannel:
    """An HTTP POST of a JSON document per subject, with a Slack/Teams-compatible ``text`` field;
    timeouts, and retries with exponential backoff."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        o = config.options
        if not o.get("url"):
            raise ChannelError(f"channel {config.name}: url is missing")
        self.url = o["url"]
        self.timeout = float(o.get("timeout", 5))
        self.retries = int(o.get("retries", 3))
        self.backoff = float(o.get("backoff", 0.5))
        self.headers = {"Content-Type": "application/json", "User-Agent": "certmgr"}
        token = _secret(config.name, o, "token")
        if token:
            self.headers[o.get("token_header", "Authorization")] = f"{o.get('token_prefix', 'Bearer ')}{token}"

    def post(self, document: dict) -> None:
        body = json.dumps(document).encode()
        last = None
        for attempt in range(1, self.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    if 200 <= response.status < 300:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if 400 <= exc.code < 500 and exc.code not in (408, 429):
                    break  # the receiver refuses this request; repeating it will not help
            except (OSError, urllib.error.URLError) as exc:
                last = str(getattr(exc, "reason", exc))
            if attempt < self.retries:
                time.sleep(self.backoff * 2 ** (attempt - 1))
        raise ChannelError(f"channel {self.config.name}: POST {self.url} failed after {attempt} attempt(s): {last}")

    def send(self, alerts: list[tuple[Subject, str | None]]) -> list[Subject]:
        delivered, errors = [], []
        for alert, previous in alerts:
            document = alert.as_dict(previous) | {"text": alert_text(alert, previous), "source": "certmgr"}
            try:
                self.post(document)
                delivered.append(alert)
            except ChannelError as exc:
                errors.append(str(exc))
                break  # the receiver is down: the rest waits for the next run
        self.last_error = errors[0] if errors else None
        if errors:
            log.warning("%s", errors[0])
        return delivered


def make_channel(config: ChannelConfig):
    return {"smtp": SmtpChannel, "webhook": WebhookChannel}[config.type](config)
