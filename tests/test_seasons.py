"""Time semantics of a study: a season is one period, a year is exported only once it has ended.

A season across the New Year (``months = [11, 2]``) runs from 1 November of the year
before to the end of February and is named for the year it ends in. A year whose season
has not ended, plus ``study.settle_days`` for Landsat processing, is not exported; an
export made before that (by an earlier version, mid-season) is made again.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from cli import app
from pipeline.config import load_study
from pipeline.run import output_paths

runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _exported_years(emulator) -> list[int]:
    return [int(r.json()["description"][-4:]) for r in emulator.router.requests
            if r.method == "POST" and r.path.endswith("image:export")]


@pytest.fixture
def on(monkeypatch):
    """Fake the calendar every eetrend command reads its years from."""
    def set_today(day: dt.date) -> None:
        monkeypatch.setattr("pipeline.config.current_date", lambda: day)
    return set_today


@pytest.mark.parametrize(
    ("months", "today", "years", "later"),
    [
        # summer: 2026 is exported from 15 October, 14 days after its season ends
        ("[6, 9]", dt.date(2026, 1, 2), [2023, 2024, 2025], {2026: dt.date(2026, 10, 15)}),
        ("[6, 9]", dt.date(2026, 10, 14), [2023, 2024, 2025], {2026: dt.date(2026, 10, 15)}),
        ("[6, 9]", dt.date(2026, 10, 15), [2023, 2024, 2025, 2026], {}),
        # across the New Year: the 2026 season ends in February 2026
        ("[11, 2]", dt.date(2026, 3, 14), [2023, 2024, 2025], {2026: dt.date(2026, 3, 15)}),
        ("[11, 2]", dt.date(2026, 3, 15), [2023, 2024, 2025, 2026], {}),
        # no season: the calendar year
        (None, dt.date(2026, 12, 31), [2023, 2024, 2025], {2026: dt.date(2027, 1, 15)}),
        ("[12, 12]", dt.date(2027, 1, 14), [2023, 2024, 2025],
         {2026: dt.date(2027, 1, 15), 2027: dt.date(2028, 1, 15)}),
    ],
)
def test_a_year_is_exported_only_after_its_season_and_the_settling_days(make_study, months, today, years, later):
    composite = f"months = {months}" if months else ""
    path, _ = make_study(years="2023..current", composite=composite)
    study = load_study(path, today=today)
    assert study.years == years and study.later == later


def test_settle_days_is_configurable(make_study):
    path, _ = make_study(years="2023..current", composite="months = [6, 9]")
    text = path.read_text().replace('years = "2023..current"', 'years = "2023..current"\nsettle_days = 0')
    path.write_text(text)
    assert load_study(path, today=dt.date(2026, 10, 1)).years[-1] == 2026
    assert load_study(path, today=dt.date(2026, 9, 30)).years[-1] == 2025


def test_an_explicit_list_with_the_current_year_waits_too(make_study):
    path, _ = make_study(composite="months = [6, 9]")
    path.write_text(path.read_text().replace('years = "1995..2015"', "years = [2020, 2024, 2026]"))
    study = load_study(path, today=dt.date(2026, 7, 1))
    assert study.years == [2020, 2024] and list(study.later) == [2026]


def test_run_before_the_season_ends_exports_the_rest_fits_it_and_says_when(emulator, make_study, on):
    on(dt.date(2026, 1, 2))
    path, _ = make_study(years="2022..current", composite="months = [6, 9]", extra='[trend]\nmethod = "ols"')
    first = _cli("run", path)
    assert first.exit_code == 75, first.output
    assert sorted(_exported_years(emulator)) == [2022, 2023, 2024, 2025]
    note = "2026 is not exported yet: its season ends 2026-09-30, and it is exported from 2026-10-15"
    assert note in first.output
    emulator.earthengine.finish_all()
    second = _cli("run", path)
    assert second.exit_code == 0, second.output  # complete for the years that have ended
    assert note in second.output
    study = load_study(path, today=dt.date(2026, 1, 2))
    report = json.loads(output_paths(study)["report"].read_text())
    assert report["years"] == [2022, 2023, 2024, 2025]

    on(dt.date(2026, 10, 15))  # the season has ended: the next cron run exports 2026 alone, then refits
    third = _cli("run", path)
    assert third.exit_code == 75 and sorted(_exported_years(emulator)) == [2022, 2023, 2024, 2025, 2026]
    emulator.earthengine.finish_all()
    fourth = _cli("run", path)
    assert fourth.exit_code == 0, fourth.output
    assert json.loads(output_paths(study)["report"].read_text())["years"] == [2022, 2023, 2024, 2025, 2026]


def test_status_says_when_a_year_in_progress_will_be_exported(emulator, make_study, on):
    on(dt.date(2026, 7, 1))
    path, _ = make_study(years="2024..current", composite="months = [6, 9]")
    table = _cli("status", path, "--cached")
    assert table.exit_code == 0
    assert "2026 is not exported yet: its season ends 2026-09-30, and it is exported from 2026-10-15" in \
        " ".join(table.output.split())
    listing = json.loads(_cli("status", path, "--cached", "--json").output)
    assert listing["later"] == [{"year": 2026, "exported_from": "2026-10-15"}]
    assert [item["year"] for item in listing["years"]] == [2024, 2025]


def test_redo_of_a_year_in_progress_is_refused(emulator, make_study, on):
    on(dt.date(2026, 7, 1))
    path, _ = make_study(years="2024..current", composite="months = [6, 9]")
    result = _cli("export", path, "--redo", "2026")
    assert result.exit_code == 2
    assert "--redo 2026: 2026 is not exported yet: its season ends 2026-09-30" in result.output
    assert _exported_years(emulator) == []


def test_an_export_made_mid_season_is_made_again_once_the_season_ends(emulator, make_study, on):
    """An earlier version exported 2025 on 1 July 2025; its summer was never fetched. Now it is."""
    on(dt.date(2025, 12, 1))
    path, _ = make_study(years="2023..2025", composite="months = [6, 9]", extra='[trend]\nmethod = "ols"')
    emulator.clock.set(dt.datetime(2025, 7, 1, tzinfo=dt.timezone.utc).timestamp())  # the task's createTime
    assert _cli("export", path).exit_code == 0
    emulator.clock.set(dt.datetime(2025, 12, 1, tzinfo=dt.timezone.utc).timestamp())
    emulator.earthengine.finish_all()
    first_ids = {r.json()["requestId"] for r in emulator.router.requests if r.path.endswith("image:export")}

    result = _cli("run", path)
    assert "exported again, since their last export was made before their season ended: 2025" in \
        result.output, result.output  # 2023 and 2024 had ended when they were exported
    assert result.exit_code == 75
    again = [r.json() for r in emulator.router.requests if r.path.endswith("image:export")][3:]
    assert [body["description"][-4:] for body in again] == ["2025"]
    assert again[0]["requestId"] not in first_ids  # a new requestId: Earth Engine starts a new task
    emulator.earthengine.finish_all()
    final = _cli("run", path)
    assert final.exit_code == 0, final.output
    assert "exported again" not in final.output  # once is enough


def test_a_season_across_the_new_year_changes_the_fingerprint_of_such_studies_only(make_study):
    _, summer = make_study(composite="months = [6, 9]")
    assert "season" not in summer.output_settings(2000)["composite"]
    _, winter = make_study(composite="months = [11, 2]")
    assert winter.output_settings(2000)["composite"]["season"] == "across the New Year"
    assert winter.season(2000) == (dt.date(1999, 11, 1), dt.date(2000, 3, 1))
