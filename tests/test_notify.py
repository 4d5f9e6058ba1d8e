"""The factory notifier against real local servers: a Slack-style webhook and an SMTP server.

Connections come from ``AIRFLOW_CONN_*`` environment variables, as in production.
"""

from __future__ import annotations

import email
import json
import logging
import socketserver
import threading
from collections.abc import Iterator
from http.server import HTTPServer
from types import SimpleNamespace

import pytest

from ai_factory.orchestration.notify import FactoryNotifier, NotificationError, slack_webhook_url

CONTEXT = {"ti": SimpleNamespace(dag_id="drift_monitoring", task_id="report", try_number=2),
           "run_id": "scheduled__2026-05-01", "logical_date": "2026-05-01", "exception": ValueError("boom")}


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO, MAIL, RCPT, DATA, QUIT."""

    def handle(self) -> None:
        self.wfile.write(b"220 localhost test SMTP\r\n")
        rcpt: list[str] = []
        while line := self.rfile.readline():
            cmd = line.decode().strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(b"250 localhost\r\n")
            elif verb == "MAIL":
                self.wfile.write(b"250 OK\r\n")
            elif verb == "RCPT":
                rcpt.append(cmd.split(":", 1)[1].strip(" <>"))
                self.wfile.write(b"250 OK\r\n")
            elif verb == "DATA":
                self.wfile.write(b"354 end with .\r\n")
                data = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data.append(chunk)
                self.server.mails.append((rcpt, b"".join(data)))  # type: ignore[attr-defined]
                self.wfile.write(b"250 queued\r\n")
            elif verb == "QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 OK\r\n")


@pytest.fixture
def smtp_server() -> Iterator[socketserver.TCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    server.mails = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _slack_env(monkeypatch: pytest.MonkeyPatch, server: HTTPServer) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AI_FACTORY_SLACK", f"http://127.0.0.1:{server.server_address[1]}/services/T0/B0/x")


def _smtp_env(monkeypatch: pytest.MonkeyPatch, server: socketserver.TCPServer, **extra: object) -> None:
    extras = {"disable_ssl": True, "disable_tls": True, "from_email": "factory@example.com",
              "to": "ops@example.com, ml@example.com", "retry_limit": 0, "timeout": 5, **extra}
    monkeypatch.setenv("AIRFLOW_CONN_AI_FACTORY_SMTP", json.dumps({
        "conn_type": "smtp", "host": "127.0.0.1", "port": server.server_address[1],
        "extra": {k: v for k, v in extras.items() if v is not None},
    }))


@pytest.fixture(autouse=True)
def _no_channels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_AI_FACTORY_SLACK", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_AI_FACTORY_SMTP", raising=False)


def test_without_connections_it_only_logs(caplog):
    with caplog.at_level(logging.ERROR, logger="ai_factory.orchestration.notify"):
        FactoryNotifier()(dict(CONTEXT))
    lines = [r.getMessage() for r in caplog.records if "AI-FACTORY NOTIFY" in r.getMessage()]
    assert lines == ["AI-FACTORY NOTIFY [AI Factory] drift_monitoring.report failed (scheduled__2026-05-01) | "
                     "Task report of DAG drift_monitoring failed on try 2 (run scheduled__2026-05-01, "
                     "logical date 2026-05-01): boom"]


def test_slack_webhook_gets_the_rendered_message(monkeypatch, webhook, caplog):
    _slack_env(monkeypatch, webhook)
    notifier = FactoryNotifier.drift(subject="drift on {{ ds }}", message="share {{ share }}: {{ ti.task_id }}")
    with caplog.at_level(logging.WARNING, logger="ai_factory.orchestration.notify"):
        notifier({**CONTEXT, "ds": "2026-05-01", "share": 0.62})
    assert webhook.received == [("/services/T0/B0/x", {"text": "*drift on 2026-05-01*\nshare 0.62: report"})]
    assert any(r.levelno == logging.WARNING and "drift on 2026-05-01" in r.getMessage() for r in caplog.records)


def test_email_goes_to_the_connections_recipients(monkeypatch, smtp_server):
    _smtp_env(monkeypatch, smtp_server)
    FactoryNotifier()(dict(CONTEXT))
    assert len(smtp_server.mails) == 1
    rcpt, raw = smtp_server.mails[0]
    msg = email.message_from_bytes(raw)
    assert rcpt == ["ops@example.com", "ml@example.com"]
    assert msg["Subject"] == "[AI Factory] drift_monitoring.report failed (scheduled__2026-05-01)"
    assert msg["From"] == "factory@example.com"
    body = next(p for p in msg.walk() if p.get_content_type() == "text/html").get_payload(decode=True).decode()
    assert "failed on try 2" in body and "boom" in body


def test_a_failing_channel_raises_after_the_others_were_tried(monkeypatch, webhook, smtp_server):
    _slack_env(monkeypatch, webhook)
    _smtp_env(monkeypatch, smtp_server)
    webhook.status = 500
    with pytest.raises(NotificationError, match="slack: HTTP Error 500"):
        FactoryNotifier()(dict(CONTEXT))
    assert len(smtp_server.mails) == 1 and len(webhook.received) == 1


def test_email_connection_without_recipients_is_a_clear_error(monkeypatch, smtp_server):
    _smtp_env(monkeypatch, smtp_server, to=None)
    with pytest.raises(NotificationError, match="'ai_factory_smtp': no recipients"):
        FactoryNotifier()(dict(CONTEXT))
    assert smtp_server.mails == []


@pytest.mark.parametrize(("conn", "url"), [
    (SimpleNamespace(conn_id="s", conn_type="https", host="hooks.slack.com", port=None, schema="services/T/B/X",
                     password=None), "https://hooks.slack.com/services/T/B/X"),
    (SimpleNamespace(conn_id="s", conn_type="slackwebhook", host="hooks.slack.com", port=None, schema="services",
                     password="T/B/X"), "https://hooks.slack.com/services/T/B/X"),
    (SimpleNamespace(conn_id="s", conn_type="slackwebhook", host="https://hooks.slack.com/services/", port=None,
                     schema=None, password="T/B/X"), "https://hooks.slack.com/services/T/B/X"),
])
def test_webhook_url_forms(conn, url):
    assert slack_webhook_url(conn) == url


def test_unsupported_webhook_connection_type_names_it():
    conn = SimpleNamespace(conn_id="ai_factory_slack", conn_type="ftp", host="x", port=None, schema=None, password=None)
    with pytest.raises(NotificationError, match="'ai_factory_slack': type 'ftp'"):
        slack_webhook_url(conn)


def test_one_notifier_instance_renders_each_context_afresh(monkeypatch, webhook):
    _slack_env(monkeypatch, webhook)
    notifier = FactoryNotifier.drift(subject="drift on {{ ds }}", message="{{ ti.task_id }}")
    notifier({**CONTEXT, "ds": "2026-05-01"})
    notifier({**CONTEXT, "ds": "2026-05-02"})
    assert [r[1]["text"] for r in webhook.received] == ["*drift on 2026-05-01*\nreport", "*drift on 2026-05-02*\nreport"]
