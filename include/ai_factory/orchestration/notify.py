"""The factory's notifier: always a log line; an email and/or a Slack message when configured.

Use it as a callback, e.g. ``on_failure_callback=[on_failure, FactoryNotifier()]`` or, for
drift, ``on_success_callback=FactoryNotifier.drift(...)`` on the task that emits the drift event.
``subject`` and ``message`` are Jinja templates rendered with the task context.

Channels are Airflow connections, looked up only when a notification is sent (never when a
DAG file is parsed); a missing connection just means that channel is off:

* ``ai_factory_smtp`` — an SMTP connection (host, port, login, password; extras as the SMTP
  provider reads them: ``from_email``, ``disable_tls``, ``disable_ssl``, ``timeout``) plus
  ``to`` in the extras (comma-separated recipients), e.g.
  ``AIRFLOW_CONN_AI_FACTORY_SMTP='smtp://user:pass@mail.example.com:587?from_email=af%40example.com&to=ops%40example.com'``
* ``ai_factory_slack`` — a Slack incoming webhook: either an ``http``/``https`` connection
  whose URI is the webhook URL (``AIRFLOW_CONN_AI_FACTORY_SLACK='https://hooks.slack.com/services/T0/B0/XXX'``)
  or the Slack provider's ``slackwebhook`` type (host + the token in the password).

A channel that is configured but fails raises after every channel was tried, so the error
shows in the task log instead of vanishing.
"""

from __future__ import annotations

import copy
import json
import logging
import urllib.request
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

SMTP_CONN_ID = "ai_factory_smtp"
SLACK_CONN_ID = "ai_factory_slack"
HTTP_TIMEOUT_SECONDS = 10

FAILURE_SUBJECT = "[AI Factory] {{ ti.dag_id }}.{{ ti.task_id }} failed ({{ run_id }})"
FAILURE_MESSAGE = (
    "Task {{ ti.task_id }} of DAG {{ ti.dag_id }} failed on try {{ ti.try_number }} "
    "(run {{ run_id }}, logical date {{ logical_date }}): {{ exception }}"
)


class NotificationError(RuntimeError):
    """A configured channel could not deliver; the message names the connection and the problem."""


def _connection(conn_id: str) -> Any | None:
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.debug("connection %s is not defined: channel off", conn_id)
        return None


def slack_webhook_url(conn: Any) -> str:
    """The webhook URL of an ``http(s)`` or ``slackwebhook`` connection."""
    conn_type = (conn.conn_type or "").lower()
    host = (conn.host or "").rstrip("/")
    if conn_type in ("http", "https"):
        if not host:
            raise NotificationError(f"connection {conn.conn_id!r}: no host in the webhook URL")
        port = f":{conn.port}" if conn.port else ""
        path = f"/{conn.schema.lstrip('/')}" if conn.schema else ""
        return f"{conn_type}://{host}{port}{path}"
    if conn_type == "slackwebhook":
        token = (conn.password or "").strip("/")
        if not token:
            raise NotificationError(f"connection {conn.conn_id!r}: the webhook token (password) is empty")
        base = host if host.startswith(("http://", "https://")) else (
            f"https://{host or 'hooks.slack.com'}" + (f"/{conn.schema.strip('/')}" if conn.schema else "/services")
        )
        return f"{base}/{token}"
    raise NotificationError(f"connection {conn.conn_id!r}: type {conn_type!r} is not http, https or slackwebhook")


class FactoryNotifier(BaseNotifier):
    """Log, then email and/or Slack through whichever connections exist."""

    template_fields = ("subject", "message")

    def __init__(
        self,
        *,
        subject: str = FAILURE_SUBJECT,
        message: str = FAILURE_MESSAGE,
        level: int = logging.ERROR,
        smtp_conn_id: str = SMTP_CONN_ID,
        slack_conn_id: str = SLACK_CONN_ID,
        to: Sequence[str] | str | None = None,
    ) -> None:
        super().__init__()
        self.subject = subject
        self.message = message
        self.level = level
        self.smtp_conn_id = smtp_conn_id
        self.slack_conn_id = slack_conn_id
        self.to = to

    @classmethod
    def drift(cls, subject: str, message: str, **kwargs: Any) -> FactoryNotifier:
        """A notifier for drift events (logged as a warning, not an error)."""
        return cls(subject=subject, message=message, level=logging.WARNING, **kwargs)

    def __call__(self, *args: Any) -> None:
        # BaseNotifier renders the templates in place; a DAG file's notifier instance serves
        # many runs (dag.test, DAG-level callbacks), so render a copy and keep the templates.
        copy.copy(self)._send(*args)

    def _send(self, *args: Any) -> None:
        super().__call__(*args)

    def notify(self, context: Any) -> None:
        log.log(self.level, "AI-FACTORY NOTIFY %s | %s", self.subject, self.message)
        errors: list[str] = []
        for channel, send in (("email", self._email), ("slack", self._slack)):
            try:
                send()
            except (NotificationError, OSError, ValueError) as exc:
                log.error("notification via %s failed: %s", channel, exc)
                errors.append(f"{channel}: {exc}")
        if errors:
            raise NotificationError("; ".join(errors))

    def _recipients(self, conn: Any) -> list[str]:
        raw: Sequence[str] | str | None = self.to or conn.extra_dejson.get("to")
        items = raw.split(",") if isinstance(raw, str) else list(raw or [])
        out = [r.strip() for r in items if r.strip()]
        if not out:
            raise NotificationError(f"connection {self.smtp_conn_id!r}: no recipients (set 'to' in its extras)")
        return out

    def _email(self) -> None:
        conn = _connection(self.smtp_conn_id)
        if conn is None:
            return
        from airflow.providers.smtp.hooks.smtp import SmtpHook

        to = self._recipients(conn)
        body = f"<p>{_html_escape(self.message)}</p>"
        try:
            with SmtpHook(smtp_conn_id=self.smtp_conn_id) as hook:
                hook.send_email_smtp(to=to, subject=self.subject, html_content=body)
        except Exception as exc:  # the SMTP hook raises AirflowException and smtplib errors alike
            raise NotificationError(f"connection {self.smtp_conn_id!r}: sending mail failed: {exc}") from exc
        log.info("notification emailed to %s via %s", ", ".join(to), self.smtp_conn_id)

    def _slack(self) -> None:
        conn = _connection(self.slack_conn_id)
        if conn is None:
            return
        url = slack_webhook_url(conn)
        payload = json.dumps({"text": f"*{self.subject}*\n{self.message}"}).encode()
        request = urllib.request.Request(url, data=payload, headers={"Content-Type": "application/json"},
                                         method="POST")
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310 (URL from a connection)
            status = response.status
        if status >= 300:
            raise NotificationError(f"connection {self.slack_conn_id!r}: webhook answered HTTP {status}")
        log.info("notification posted to Slack via %s", self.slack_conn_id)


def _html_escape(text: str) -> str:
    import html

    return html.escape(text).replace("\n", "<br>")
