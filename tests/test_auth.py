"""Credentials: each failure is one line with the fix, and no token or key ever reaches the output."""

from __future__ import annotations

import json
import logging
import os

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.earthengine import client as ee_api
from pipeline.earthengine.exports import export_study
from pipeline.errors import AuthError
from tests.conftest import TWO_YEARS

runner = CliRunner()
REFRESH_TOKEN = "1//0secret-refresh-token-do-not-print"


def _service_account_key(path, mode=0o600):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1", "private_key": pem,
        "client_email": "eetrend@test-project.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    os.chmod(path, mode)
    return pem


def _sa_config(emulator, key="key.json"):
    return f'auth = "service_account"\nkey_file = "{key}"\ntoken_uri = "{emulator.token_uri}"'


def test_service_account_key_signs_in_through_the_token_endpoint(emulator, make_study, tmp_path):
    _service_account_key(tmp_path / "key.json")
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, earthengine=_sa_config(emulator))
    assert export_study(study).submitted == [2000, 2001]
    assert emulator.count("POST", r"^/token$") == 1


def test_a_world_readable_key_gets_a_warning(emulator, make_study, tmp_path, caplog):
    pem = _service_account_key(tmp_path / "key.json", mode=0o644)
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, earthengine=_sa_config(emulator))
    with caplog.at_level(logging.WARNING):
        ee_api.connect(study)
    assert "readable by other users; run: chmod 600" in caplog.text
    assert pem.splitlines()[1] not in caplog.text


@pytest.mark.parametrize(("content", "expected"), [
    (None, "does not exist; download a JSON key"),
    ("not json", "is not a JSON service-account key"),
    ('{"type": "authorized_user"}', "is not a service-account key"),
])
def test_bad_service_account_keys(emulator, make_study, tmp_path, content, expected):
    if content is not None:
        (tmp_path / "key.json").write_text(content)
        os.chmod(tmp_path / "key.json", 0o600)
    path, study = make_study(earthengine=_sa_config(emulator))
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 1
    assert expected in result.output and len(result.output.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_key(emulator, make_study, tmp_path):
    _service_account_key(tmp_path / "key.json", mode=0o000)
    path, study = make_study(earthengine=_sa_config(emulator))
    with pytest.raises(AuthError, match="not readable by this user"):
        ee_api.connect(study)


def _user_credentials(tmp_path, refresh_token=REFRESH_TOKEN):
    (tmp_path / "credentials").write_text(json.dumps({"refresh_token": refresh_token, "client_id": "cid",
                                                      "client_secret": "csecret"}))


def test_stored_user_credentials_are_refreshed_at_the_token_endpoint(emulator, make_study, tmp_path):
    _user_credentials(tmp_path)
    path, study = make_study(years="2000..2001", extra=TWO_YEARS, earthengine=(
        f'auth = "user"\ncredentials_file = "credentials"\ntoken_uri = "{emulator.token_uri}"'))
    assert export_study(study).submitted == [2000, 2001]
    assert emulator.count("POST", r"^/token$") == 1


def test_missing_stored_credentials_say_to_authenticate(emulator, make_study):
    path, study = make_study(earthengine='auth = "user"\ncredentials_file = "nowhere.json"')
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 1
    assert "no stored Earth Engine credentials" in result.output and "earthengine authenticate" in result.output


def test_a_revoked_refresh_token_is_one_line_and_never_printed(emulator, make_study, tmp_path):
    _user_credentials(tmp_path)
    path, study = make_study(earthengine=(
        f'auth = "user"\ncredentials_file = "credentials"\ntoken_uri = "{emulator.token_uri}"'))
    emulator.earthengine.revoked = True
    result = runner.invoke(app, ["export", str(path)])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "expired or revoked" in lines[0] and "earthengine authenticate" in lines[0]
    assert REFRESH_TOKEN not in result.output and "csecret" not in result.output


def test_credentials_revoked_mid_run_stop_the_run_with_the_fix(emulator, make_study):
    path, study = make_study(years="2000..2001", extra=TWO_YEARS)
    export_study(study)
    emulator.clock.advance(10)
    emulator.earthengine.revoked = True
    result = runner.invoke(app, ["status", str(path)])
    assert result.exit_code == 1
    assert "credentials were refused" in result.output and "emulator-static-token" not in result.output


def test_scrub_removes_tokens_from_messages():
    text = ee_api._scrub("bad token ya29.a0AfH6SMBx-secret and 1//0abc-def refresh")
    assert "a0AfH6SMBx" not in text and "0abc" not in text and text.count("<redacted>") == 2
