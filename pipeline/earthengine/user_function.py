"""The user's own composite function: ``[composite] function = "composites.py:annual"``.

The file is the user's own code and runs with their rights. eetrend reads it at config
load only to check that it exists and parses (nothing runs then), and imports it, by
path and alone (it is not put on ``sys.path``), once Earth Engine is initialised, so its
top level may build ``ee`` objects. ``annual(year, region)`` is then called for each
year with the study region as an ``ee.Geometry`` and must return an ``ee.Image``.

Every way this can go wrong (a missing file, a syntax error, no such function, an
exception inside it, a result that is not an image) is one :class:`UserCodeError` line
naming the file and, where there is one, the line; ``--debug`` shows the traceback
(the user's exception is chained).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import sys
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError

if TYPE_CHECKING:
    import ee


class Study(Protocol):
    """What this module needs of a :class:`pipeline.config.Study` (named so, not imported: the config
    loader calls :func:`check_function_file`, so importing it here would make a circle)."""

    config: Any

    def resolve(self, path: Path) -> Path: ...

KEY = "composite.function"
_LOADED: weakref.WeakKeyDictionary[Study, Callable[..., Any]] = weakref.WeakKeyDictionary()


class UserCodeError(ConfigError):
    """The user's composite function is missing, broken, or returned something that is not an image."""


def function_spec(study: Study) -> tuple[Path, str, str]:
    """(the file's resolved path, the function's name, the file as the config names it)."""
    spec = study.config.composite.function
    assert spec is not None
    file, _, name = spec.rpartition(":")
    return study.resolve(Path(file)), name, file


def check_function_file(study: Study) -> None:
    """Before any request: the file exists, parses, and defines the function (nothing of it runs)."""
    path, name, shown = function_spec(study)
    source = _read(path, shown)
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        raise UserCodeError(f"{KEY}: {shown}:{exc.lineno}: {exc.msg}; fix the syntax of your function file") \
            from exc
    if name not in _top_level_names(tree):
        defined = sorted(n for n in _top_level_names(tree) if not n.startswith("_"))
        hint = f" (it defines {', '.join(defined)})" if defined else ""
        raise UserCodeError(f"{KEY}: {shown} defines no function '{name}'{hint}; write def {name}(year, region): "
                            "... returning an ee.Image, or fix the name after ':'")


def _read(path: Path, shown: str) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UserCodeError(f"{KEY}: {shown} does not exist (looked for {path}); the file is relative to the "
                            "config's folder") from None
    except IsADirectoryError:
        raise UserCodeError(f"{KEY}: {shown} is a folder; name the Python file, e.g. 'composites.py:annual'") \
            from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserCodeError(f"{KEY}: cannot read {shown} ({exc})") from None


def _top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def year_image(study: Study, year: int, region: ee.Geometry) -> ee.Image:
    """``function(year, region)`` of the user's file, checked to be an ``ee.Image``."""
    import ee

    function = _function(study)
    path, name, shown = function_spec(study)
    try:
        result = function(year, region)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything; each is one line
        raise UserCodeError(f"{KEY}: {_where(exc, path, shown)}{name}({year}, region) raised "
                            f"{_one_line(exc)}; fix the function (eetrend --debug shows the traceback)") from exc
    if isinstance(result, ee.Image):
        return result
    kind = type(result).__name__ if result is not None else "None"
    if isinstance(result, ee.ImageCollection):
        hint = "; reduce it to one image, e.g. .median()"
    elif isinstance(result, ee.ComputedObject):
        hint = "; wrap it with ee.Image(...) if it is an image"
    else:
        hint = ""
    raise UserCodeError(f"{KEY}: {shown}: {name}({year}, region) returned {kind}, not an ee.Image{hint}")


def _function(study: Study) -> Callable[..., Any]:
    """Import the file (once per study) and return the function."""
    if study in _LOADED:
        return _LOADED[study]
    check_function_file(study)
    path, name, shown = function_spec(study)
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(f"eetrend_composite_{digest}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - importing the user's file may raise anything
        sys.modules.pop(spec.name, None)
        raise UserCodeError(f"{KEY}: importing {shown} failed: {_where(exc, path, shown)}{_one_line(exc)}; fix "
                            "the file (eetrend --debug shows the traceback)") from exc
    function = getattr(module, name, None)
    if not callable(function):
        found = "is not defined" if function is None else f"is a {type(function).__name__}, not a function"
        raise UserCodeError(f"{KEY}: in {shown}, '{name}' {found}; write def {name}(year, region): ...")
    _LOADED[study] = function
    return function


def _where(exc: BaseException, path: Path, shown: str) -> str:
    """'file.py:LINE: ' for the innermost frame of the user's file in the traceback, or ''."""
    lines = [frame.lineno for frame in traceback.extract_tb(exc.__traceback__) if Path(frame.filename) == path]
    if isinstance(exc, SyntaxError) and exc.filename and Path(exc.filename) == path:
        lines.append(exc.lineno)
    return f"{shown}:{lines[-1]}: " if lines and lines[-1] else ""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
