"""``eetrend check``: everything knowable without running a study, one line per problem, no request.

``export``, ``run`` and ``download`` make the same checks before their first request, and an
export refused before its request leaves the manifest as it was.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cli import app
from tests.conftest import study_toml

runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _errors(result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


def _config(tmp_path, emulator, **kwargs):
    path = tmp_path / "study.toml"
    path.write_text(study_toml(emulator.url, **kwargs))
    return path


def test_a_sound_config_passes_without_a_request(emulator, tmp_path):
    path = _config(tmp_path, emulator, years="2000..2010")
    result = _cli("check", path)
    assert result.exit_code == 0, result.output
    assert "no problem found (11 years, 2000-2010; annual max NDVI); nothing was sent to Earth Engine" in result.output
    assert emulator.router.log == []
    assert not (tmp_path / "state").exists()  # nothing written either


def test_every_config_value_problem_is_listed_one_line_each(emulator, tmp_path):
    text = study_toml(emulator.url).replace("[composite]\n", '[composite]\nreducer = "mode"\nindex = "NDWI"\n')
    text = text.replace('[paths]', '[trend]\nalpha = 2\n\n[paths]')
    path = tmp_path / "study.toml"
    path.write_text(text)
    errors = _errors(_cli("check", path))
    assert len(errors) == 3, errors
    assert any("composite.reducer: Input should be 'max'" in e for e in errors)
    assert any("composite.index: Input should be 'NDVI'" in e for e in errors)
    assert any("trend.alpha: Input should be less than 1" in e for e in errors)
    assert all(e.startswith(f"error: {path}: ") for e in errors)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"years": "2000..2004", "extra": "[trend]\nmin_years = 6"},
         r"trend\.min_years = 6 is more than the study's 5 years, so every pixel would be NaN"),
        ({"extra": '[trend]\nmethod = "ols"\nmk_test = "tfpw"'},
         r"trend\.mk_test = 'tfpw' changes the Mann-Kendall bands, which method = 'ols' does not write"),
        ({"extra": "[trend]\nmin_count = 3"}, r"trend\.min_count needs the clear-scene counts: set "
                                               r"composite\.count_band = true"),
        ({"years": "2014..2016", "composite": 'sensors = ["TM"]'},
         r"composite\.sensors: none of TM \(1982-2012\) flew in 2014-2016; add a sensor that did"),
        ({"extra": '[trend]\nfdr = "bh"\nfdr_q = 0.5\nedge_years = 30'}, None),  # sound: no problem
    ],
)
def test_fit_time_problems_are_caught_before_any_request(emulator, tmp_path, edit, expected):
    path = _config(tmp_path, emulator, **edit)
    result = _cli("check", path)
    if expected is None:
        assert result.exit_code == 0, result.output
        return
    (line,) = _errors(result)
    assert result.exit_code == 2 and re.search(expected, line), line
    for command in ("export", "run", "download"):
        refused = _cli(command, path)
        assert refused.exit_code == 2, refused.output
        assert re.search(expected, refused.output), refused.output
    assert emulator.router.log == []  # not a request, not even the discovery document
    assert not (tmp_path / "state" / "manifest.sqlite").exists()


def test_credentials_files_are_read_locally(emulator, tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "authorized_user"}')
    path = _config(tmp_path, emulator, earthengine=f'auth = "service_account"\nkey_file = "{key}"')
    (line,) = _errors(_cli("check", path))
    assert f"earthengine.key_file: {key} is not a service-account key" in line
    key.unlink()
    (line,) = _errors(_cli("check", path))
    assert f"earthengine.key_file: {key} does not exist" in line
    assert emulator.router.log == []


def test_stored_user_credentials_that_do_not_exist_are_named(emulator, tmp_path, monkeypatch):
    import ee

    monkeypatch.setattr(ee.oauth, "get_credentials_path", lambda: str(tmp_path / "none" / "credentials"))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    path = _config(tmp_path, emulator, earthengine='auth = "user"')
    (line,) = _errors(_cli("check", path))
    assert "earthengine.auth = 'user': no stored Earth Engine credentials at" in line
    assert "earthengine authenticate" in line
    (tmp_path / "gcloud").mkdir()
    (tmp_path / "gcloud" / "application_default_credentials.json").write_text("{}")
    assert _cli("check", path).exit_code == 0  # eetrend falls back to them, as ee does


def test_notification_secrets_must_be_in_the_environment(emulator, tmp_path, monkeypatch):
    monkeypatch.delenv("EETREND_TEST_TOKEN", raising=False)
    extra = '[notify]\nwebhook = "http://127.0.0.1:9/hook"\ntoken_env = "EETREND_TEST_TOKEN"'
    path = _config(tmp_path, emulator, extra=extra)
    (line,) = _errors(_cli("check", path))
    assert "notify.token_env: the environment variable EETREND_TEST_TOKEN is not set" in line
    monkeypatch.setenv("EETREND_TEST_TOKEN", "t")
    assert _cli("check", path).exit_code == 0


def test_missing_extras_are_named_with_the_install_line(emulator, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else
                        real(name, *a))
    path = _config(tmp_path, emulator, extra="[dask]\nworkers = 2")
    (line,) = _errors(_cli("check", path))
    assert "dask: fitting on a Dask cluster needs distributed, which is not installed; install it with: pip " \
           "install 'eetrend[dask]'" in line


def test_the_function_file_is_checked_without_running_it(emulator, tmp_path):
    (tmp_path / "c.py").write_text("raise SystemExit('ran')\n\ndef annual(year, region)\n    pass\n")
    path = _config(tmp_path, emulator, composite='function = "c.py:annual"')
    (line,) = _errors(_cli("check", path))
    assert "composite.function: c.py:3: expected ':'" in line


def test_an_export_refused_before_its_request_leaves_the_manifest_as_it_was(emulator, tmp_path, monkeypatch):
    """A year refused while its image is built (before any request) keeps its row; the fixed config needs no
    --force."""
    from pipeline.config import load_study
    from pipeline.earthengine import exports
    from pipeline.earthengine import manifest as m
    from pipeline.errors import ConfigError

    path = _config(tmp_path, emulator, years="2000..2002")
    real = exports.year_image

    def refuses_2001(study, year, area=None):
        if year == 2001:
            raise ConfigError("composite.sensors: none of TM flew in 2001; add a sensor or exclude the year")
        return real(study, year, area)

    monkeypatch.setattr(exports, "year_image", refuses_2001)
    refused = _cli("export", path)
    assert refused.exit_code == 2 and "none of TM flew in 2001" in refused.output
    with exports.open_manifest(load_study(path)) as manifest:
        record = manifest.year(2001)
        assert record.state == m.PENDING and record.attempts == 0 and record.request_id is None
    monkeypatch.setattr(exports, "year_image", real)
    again = _cli("export", path)
    assert again.exit_code == 0, again.output  # no "changed since exported", no --force
    assert "submitted 2 task(s): 2001-2002" in again.output
