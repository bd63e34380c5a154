"""Notifications of ``eetrend run``: a loopback HTTP receiver (ntfy + webhook) and a loopback SMTP server.

The SMTP server is aiosmtpd with STARTTLS on a self-signed certificate made here with
``cryptography`` and AUTH required after TLS, so the client really negotiates TLS,
checks the certificate against the given CA file and logs in.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import json
import logging
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.run import output_paths

runner = CliRunner()
PASSWORD = "s3cret-Pa55word-for-smtp"
TOKEN = "tk_loopbacktoken0123456789"
TOPIC = "eetrend-topic-a8f3k2"


class Receiver(ThreadingHTTPServer):
    """Records every POST (path, headers, body) and answers with ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def at(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def receiver():
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _self_signed(folder):
    """A certificate for 127.0.0.1 and its key, written as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


class Mailbox:
    """aiosmtpd handler: keeps each delivered message and whether the session was under TLS."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                              "data": envelope.content.decode("utf-8"), "tls": session.ssl is not None,
                              "login": getattr(session.auth_data, "login", None)})
        return "250 OK"


@pytest.fixture
def smtp_server(tmp_path):
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    logging.getLogger("mail.log").setLevel(logging.WARNING)  # the server's own chatter, not eetrend's log
    cert_file, key_file = _self_signed(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"eetrend" and \
            auth_data.password == PASSWORD.encode()
        return AuthResult(success=ok, handled=False, auth_data=auth_data)  # handled=False: the server answers 535

    with socket.socket() as probe:  # aiosmtpd's Controller needs a port number before it starts
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, server_hostname="loopback",
                            tls_context=context, require_starttls=True, authenticator=authenticate,
                            auth_require_tls=True)
    controller.start()
    mailbox.port, mailbox.cafile = port, cert_file
    yield mailbox
    controller.stop()


def _notify_table(receiver, mailbox=None) -> str:
    table = (f'[notify]\nntfy = "{receiver.url}/{TOPIC}"\nwebhook = "{receiver.url}/hook"\n'
             'token_env = "EETREND_TEST_TOKEN"\n')
    if mailbox is not None:
        table += (f'[notify.email]\nhost = "127.0.0.1"\nport = {mailbox.port}\nuser = "eetrend"\n'
                  f'password_env = "EETREND_TEST_SMTP"\nsender = "eetrend@example.org"\n'
                  f'to = ["scientist@example.org"]\ncafile = "{mailbox.cafile}"\ntimeout = 10\n')
    return '[trend]\nmethod = "ols"\n' + table


def _run(path, *args):
    return runner.invoke(app, ["run", str(path), *args])


def test_new_outputs_notify_every_transport_once_and_waiting_or_nothing_new_notify_none(
        emulator, make_study, receiver, smtp_server, monkeypatch, tmp_path):
    monkeypatch.setenv("EETREND_TEST_SMTP", PASSWORD)
    monkeypatch.setenv("EETREND_TEST_TOKEN", TOKEN)
    path, study = make_study(years="2000..2003", extra=_notify_table(receiver, smtp_server))
    log_file = tmp_path / "run.log"

    waiting = _run(path, "--log-file", str(log_file))
    assert waiting.exit_code == 75
    assert receiver.requests == [] and smtp_server.messages == []  # never for 75

    emulator.earthengine.finish_all()
    done = _run(path, "--log-file", str(log_file))
    assert done.exit_code == 0 and "fitted ols trend" in done.output
    (ntfy,) = receiver.at(f"/{TOPIC}")
    report = str(output_paths(study)["report"].with_suffix(".html"))  # the HTML report, once run writes one
    assert ntfy["headers"]["Title"] == "eetrend test-study: new trend outputs"
    assert ntfy["headers"]["Priority"] == "3" and ntfy["headers"]["Tags"] == "white_check_mark,eetrend"
    assert ntfy["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert ntfy["headers"]["Content-Type"].startswith("text/plain")
    body = ntfy["body"].decode()
    assert "study test-study: complete, new outputs written (exit 0)" in body
    assert "years: 2000-2003 (4)" in body and f"report: {report}" in body
    (hook,) = receiver.at("/hook")
    payload = json.loads(hook["body"])
    assert payload["study"] == "test-study" and payload["outcome"] == "complete" and payload["exit_code"] == 0
    assert payload["years"] == [2000, 2001, 2002, 2003] and payload["report"] == report
    assert payload["text"].startswith("eetrend test-study: new trend outputs\n")
    (mail,) = smtp_server.messages
    assert mail["tls"] and mail["login"] == b"eetrend"  # STARTTLS negotiated, then AUTH
    assert mail["to"] == ["scientist@example.org"] and mail["from"] == "eetrend@example.org"
    parsed = email.message_from_string(mail["data"], policy=email.policy.default)
    assert parsed["Subject"] == "eetrend test-study: new trend outputs"
    assert f"report: {report}" in parsed.get_content() and "years: 2000-2003 (4)" in parsed.get_content()

    unchanged = _run(path, "--log-file", str(log_file))
    assert unchanged.exit_code == 0 and "complete and up to date" in unchanged.output
    assert len(receiver.requests) == 2 and len(smtp_server.messages) == 1  # nothing new: no message

    everything = waiting.output + done.output + unchanged.output + log_file.read_text()
    assert PASSWORD not in everything and TOKEN not in everything and TOPIC not in everything
    assert "notified by email via 127.0.0.1" in log_file.read_text()


def test_a_run_needing_attention_notifies_with_the_error(emulator, make_study, receiver, monkeypatch):
    monkeypatch.delenv("EETREND_TEST_TOKEN", raising=False)
    path, study = make_study(years="2000..2002", export='folder = "eetrend_test"\nmax_attempts = 1',
                             extra=_notify_table(receiver))
    emulator.earthengine.fail_tasks("_2001", "Computation timed out.", times=5)
    assert _run(path).exit_code == 75
    emulator.earthengine.finish_all()
    result = _run(path)
    assert result.exit_code == 1
    (ntfy,) = receiver.at(f"/{TOPIC}")
    assert ntfy["headers"]["Title"] == "eetrend test-study: needs attention"
    assert ntfy["headers"]["Priority"] == "4" and "Authorization" not in ntfy["headers"]
    body = ntfy["body"].decode()
    assert "needs attention (exit 1)" in body and "2001 needs attention: Computation timed out." in body
    assert "report: none written yet" in body
    assert json.loads(receiver.at("/hook")[0]["body"])["outcome"] == "attention"


def test_an_error_that_stops_the_run_with_exit_1_is_notified(make_study, receiver, monkeypatch):
    from pipeline import run as run_module
    from pipeline.errors import EarthEngineError

    path, _ = make_study(years="2000..2002", extra=_notify_table(receiver))

    def refused(study, **kwargs):
        raise EarthEngineError("Earth Engine refused the export: Permission denied")

    monkeypatch.setattr(run_module, "export_study", refused)
    result = _run(path)
    assert result.exit_code == 1 and "Permission denied" in result.output
    (ntfy,) = receiver.at(f"/{TOPIC}")
    assert "error: Earth Engine refused the export: Permission denied" in ntfy["body"].decode()


def test_a_failed_notification_is_logged_and_never_changes_the_exit_code(emulator, make_study, receiver, tmp_path,
                                                                          smtp_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # every record of every logger, as --debug would show them
    monkeypatch.setenv("EETREND_TEST_SMTP", "the-wrong-password-123")
    path, _ = make_study(years="2000..2003", extra=_notify_table(receiver, smtp_server))
    receiver.status = 500
    log_file = tmp_path / "run.log"
    _run(path)
    emulator.earthengine.finish_all()
    result = _run(path, "--log-file", str(log_file))
    assert result.exit_code == 0  # the study is complete; the messengers' failures do not change that
    log = log_file.read_text()
    assert f"notification by ntfy topic on {receiver.url} failed: HTTP 500" in log
    assert f"notification by webhook on {receiver.url} failed: HTTP 500" in log
    assert "notification by email via 127.0.0.1" in log and "Authentication credentials invalid" in log
    assert smtp_server.messages == []
    everything = log + result.output + caplog.text
    assert "notification by email" in caplog.text
    assert "the-wrong-password-123" not in everything and TOPIC not in everything


def test_notify_on_the_command_line_posts_to_an_ntfy_topic(emulator, make_study, receiver):
    path, _ = make_study(years="2000..2003", extra='[trend]\nmethod = "ols"')
    _run(path, "--notify", f"{receiver.url}/cli-topic")
    assert receiver.requests == []
    emulator.earthengine.finish_all()
    assert _run(path, "--notify", f"{receiver.url}/cli-topic").exit_code == 0
    (ntfy,) = receiver.at("/cli-topic")
    assert ntfy["headers"]["Title"] == "eetrend test-study: new trend outputs"
    bad = _run(path, "--notify", "ntfy.sh/topic")
    assert bad.exit_code == 2 and "--notify must be an http:// or https:// URL" in bad.output


def test_the_password_is_refused_in_the_config_and_never_echoed(make_study, receiver):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        make_study(extra=f'[notify.email]\nhost = "127.0.0.1"\nuser = "u"\npassword = "{PASSWORD}"\n'
                         'sender = "a@example.org"\nto = ["b@example.org"]')
    assert "notify.email.password: unknown key; did you mean 'password_env'?" in str(error.value)
    assert PASSWORD not in str(error.value)
    with pytest.raises(ConfigError, match="give the NAME of an environment variable"):
        make_study(extra=f'[notify.email]\nhost = "h"\nuser = "u"\npassword_env = "{PASSWORD}"\n'
                         'sender = "a@example.org"\nto = ["b@example.org"]')


def test_the_example_configs_notify_block_is_valid_when_uncommented(tmp_path):
    from pathlib import Path

    from pipeline.config import load_study

    example = (Path(__file__).resolve().parents[1] / "configs" / "example.toml").read_text()
    head, _, block = example.partition("# [notify]\n")
    uncommented = "[notify]\n" + "\n".join(line.removeprefix("# ") for line in block.splitlines())
    path = tmp_path / "study.toml"
    path.write_text(head + uncommented)
    settings = load_study(path).config.notify
    assert settings.ntfy.startswith("https://") and settings.email.password_env == "EETREND_SMTP_PASSWORD"


def test_a_login_without_starttls_to_another_host_is_refused(make_study):
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="would send the password unencrypted; keep starttls = true"):
        make_study(extra='[notify.email]\nhost = "smtp.example.org"\nstarttls = false\nuser = "u"\n'
                         'password_env = "P"\nsender = "a@example.org"\nto = ["b@example.org"]')
