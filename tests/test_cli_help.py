"""``--help`` as good as the guide, for every command found in the Click tree (issue 25, point 4).

Each command: a first sentence saying what it does, shown whole in ``eetrend --help``; every
option's help ends with its default (Click's ``[default: ...]``, or ``[required]``); no flag
shows a ``<bool>`` or BOOLEAN metavar; and an epilog with at least one ``eetrend COMMAND ...``
example, kept on one line at any width. The examples are run (against sample rasters and the
emulator), so a help example cannot lie. Help is rendered at a fixed width, without colour.
"""

from __future__ import annotations

import re
import shlex
import time

import numpy as np
import pytest
import rasterio
import typer
from rasterio.transform import from_origin
from typer.testing import CliRunner

from cli import app
from tests.conftest import study_toml

ROOT = typer.main.get_command(app)
RUNNER = CliRunner()
PLAIN = {"COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}


def _walk(command, path: tuple[str, ...] = ()):
    yield path, command
    for name in getattr(command, "commands", {}):
        yield from _walk(command.commands[name], (*path, name))


COMMANDS = dict(_walk(ROOT))
IDS = [" ".join(path) or "eetrend" for path in COMMANDS]

#: How each command's examples are exercised below: every command in the tree is in exactly one group.
OFFLINE = [("sample",), ("trend",), ("index",), ("plot",), ("plot-pixel",), ("report",)]
STUDY = [("check",), ("export",), ("status",), ("finish",), ("download",), ("verify",), ("run",), ("report",),
         ("cancel",)]
PARSED_ONLY = [(), ("demo",)]  # the demo runs in full in tests/test_run.py; here its example is parsed
UNTIL_CTRL_C = [("emulator",)]


def _help(*args: str, columns: int = 100) -> str:
    result = RUNNER.invoke(app, [*args, "--help"], env={**PLAIN, "COLUMNS": str(columns)}, terminal_width=columns)
    assert result.exit_code == 0, result.output
    return result.output


def _context(path: tuple[str, ...]):
    """A Click context for ``path``, as ``eetrend PATH --help`` would make (for help records)."""
    context = ROOT.context_class(ROOT, info_name="eetrend")
    for name in path:
        command = context.command.commands[name]
        context = command.context_class(command, info_name=name, parent=context)
    return context


def _first_paragraph(command) -> str:
    return " ".join((command.help or "").split("\n\n")[0].split())


def _examples(path: tuple[str, ...]) -> list[str]:
    """The example lines of a command's epilog: each line starting with ``eetrend COMMAND``."""
    prefix = " ".join(("eetrend", *path))
    lines = [line.strip() for line in (COMMANDS[path].epilog or "").splitlines()]
    return [line for line in lines if line == prefix or line.startswith(prefix + " ")]


def _options(path: tuple[str, ...]):
    return [p for p in COMMANDS[path].params if p.param_type_name == "option" and p.name != "help"]


def test_every_command_is_exercised_by_one_example_group() -> None:
    groups = OFFLINE + STUDY + PARSED_ONLY + UNTIL_CTRL_C
    assert set(COMMANDS) == set(groups) - {("finish",)}
    assert len(COMMANDS) > 10  # the walk found the subcommands, not only the group


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_the_first_sentence_says_what_the_command_does_and_is_listed_whole(path) -> None:
    first = _first_paragraph(COMMANDS[path])
    assert re.fullmatch(r"[A-Z][^.]*[\w)]\.", first), f"{IDS[list(COMMANDS).index(path)]}: {first!r}"
    if path:
        listing = " ".join(_help(*path[:-1]).split())
        assert f"{path[-1]} {first}" in listing  # not cut to "..." in the parent's list of commands


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_every_option_help_ends_with_its_default_or_required(path) -> None:
    context = _context(path)
    options = _options(path)
    assert options or path in (("check",), ("verify",))  # the commands that take only a config
    for option in options:
        names, text = option.get_help_record(context)
        text = " ".join(text.split())
        said, bracket = re.fullmatch(r"(.*?)\s*(\[[^\[\]]*\])", text).groups()
        assert re.fullmatch(r"\[(default: .+|required)(; [^;]+)?\]", bracket), f"{names}: {text!r}"
        assert said.endswith("."), f"{names}: the help says what the option does, in a sentence: {said!r}"
        if option.default is None and not option.required and not option.is_flag:
            assert isinstance(option.show_default, str), f"{names} says what happens when it is left out"


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_no_flag_shows_a_bool_metavar(path) -> None:
    rendered = _help(*path)
    assert "<bool>" not in rendered and "BOOLEAN" not in rendered
    context = _context(path)
    flags = [p for p in _options(path) if p.is_flag]
    for flag in flags:
        names, _ = flag.get_help_record(context)
        assert re.fullmatch(r"-[-\w]+(, -[-\w]+)*( / -[-\w]+)?", names), names  # option names only


@pytest.mark.parametrize("path", COMMANDS, ids=IDS)
def test_the_epilog_has_an_example_kept_whole_at_any_width(path) -> None:
    examples = _examples(path)
    assert examples, f"no line starting with eetrend {' '.join(path)} in the epilog"
    for columns in (100, 60):
        lines = [line.strip() for line in _help(*path, columns=columns).splitlines()]
        for example in examples:
            assert example in lines, f"{example!r} was rewrapped at {columns} columns"


def _run_example(example: str):
    args = shlex.split(example)[1:]
    result = RUNNER.invoke(app, args, env=PLAIN)
    assert result.exit_code == 0, f"{example}\n{result.output}"
    return result


def _landsat_like(path, bands: int = 6) -> None:
    """A small 6-band reflectance raster named as in the index and plot examples (the tutorial's L7_ETMs.tif)."""
    rng = np.random.default_rng(1)
    profile = {"driver": "GTiff", "width": 40, "height": 30, "count": bands, "dtype": "uint8", "crs": "EPSG:32633",
               "transform": from_origin(500000, 5000000, 30, 30)}
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(rng.integers(1, 255, size=(bands, 30, 40), dtype=np.uint8))


def test_the_offline_examples_run(tmp_path, monkeypatch) -> None:
    """sample writes ndvi/, which the trend, plot-pixel and report examples read; trend.tif feeds plot."""
    monkeypatch.chdir(tmp_path)
    _landsat_like(tmp_path / "L7_ETMs.tif")
    ran = 0
    for path in OFFLINE:
        for example in _examples(path):
            if path == ("report",) and ".toml" in example:
                continue  # a study's report: run with the study below
            _run_example(example)
            ran += 1
    assert ran >= 8
    assert {"trend.tif", "ols.tif", "ndvi.tif", "nbr.tif", "slope.png", "sen.png", "rgb.png", "pixel.png",
            "trend.html"} <= {p.name for p in tmp_path.iterdir()}


def test_the_study_examples_run_against_the_emulator(tmp_path, monkeypatch, emulator) -> None:
    """check, export, status, download, verify, run, report and cancel, in the order a user would, on study.toml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.toml").write_text(study_toml(emulator.url, name="help-study", years="2001..2005"))
    for path in STUDY:
        if path == ("finish",):
            emulator.earthengine.finish_all()  # Earth Engine finishes the tasks export submitted
            continue
        for example in _examples(path):
            if path == ("report",) and ".toml" not in example:
                continue  # a trend file's report: run with the sample rasters above
            _run_example(example)
    assert (tmp_path / "outputs" / "help-study_trend.tif").exists()
    assert (tmp_path / "outputs" / "help-study_report.html").exists() and (tmp_path / "study.log").exists()


@pytest.mark.parametrize("path", PARSED_ONLY, ids=lambda path: " ".join(path) or "eetrend")
def test_the_examples_that_are_not_run_here_parse(path) -> None:
    examples = _examples(path)
    assert examples
    for example in examples:
        name, *args = shlex.split(example)[1:]
        command = ROOT.commands[name]
        with command.make_context(name, args, parent=_context(())) as context:  # raises on a bad option or value
            assert context.params and not context.args


def test_the_emulator_examples_serve_until_ctrl_c(monkeypatch) -> None:
    """Each example starts the emulator with its faults and assets, then a Ctrl-C (here: the first long
    sleep) ends it with 130. A fixed --port is swapped for a free one: another test may hold that port."""
    real_sleep = time.sleep

    def ctrl_c_instead_of_waiting(seconds: float) -> None:
        if seconds >= 3600:
            raise KeyboardInterrupt
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", ctrl_c_instead_of_waiting)
    examples = _examples(("emulator",))
    for example in examples:
        args = re.sub(r"--port \d+", "--port 0", example)
        result = RUNNER.invoke(app, shlex.split(args)[1:], env=PLAIN)
        assert result.exit_code == 130, f"{example}\n{result.output}"
        assert "Earth Engine emulator on http://127.0.0.1:" in result.output and "interrupted" in result.output
        assert not any(line.startswith("error") for line in result.output.splitlines())
    assert len(examples) >= 2
