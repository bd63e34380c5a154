"""The examples of README.md and the guide (docs/), found and run as a reader would run them.

Every fenced block of a page is one of:

- ``bash`` / ``sh`` / ``shell``: run by bash (``-e -u -o pipefail``) in the page's folder, with this
  environment's ``eetrend`` first on the ``PATH``;
- ``python``: executed in the page's folder, in one namespace shared by the page's Python blocks;
- ``toml``: a study config, loaded by :func:`pipeline.config.load_study`; a fragment without a
  ``[study]`` table is loaded on top of :data:`BASE_CONFIG`;
- marked ``<!-- not-run: REASON -->`` on the line before it: not run, and REASON must say why.

``<!-- file: NAME -->`` before a block writes the block to NAME in the page's folder first
(``alps.toml``, a composite function), so later blocks of the page can use it. A page's blocks
run in order in one folder, so a page reads top to bottom as a session in an empty folder.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})(?P<lang>[\w+-]*)\s*$")
MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not-run|file)\b\s*:?\s*(?P<text>.*?)\s*-->\s*$")
SHELLS = {"bash", "sh", "shell"}
RUNNERS = SHELLS | {"python", "toml"}
#: What a config fragment (``[notify]``, ``[dask.slurm]``, ...) is loaded on top of.
BASE_CONFIG = """
[study]
name = "fragment"
years = "2000..2005"
[region]
bbox = [10.80, 46.40, 11.05, 46.55]
crs = "EPSG:32632"
[earthengine]
project = "my-cloud-project"
"""


class DocsError(Exception):
    """A page's example failed, or a page breaks the rules above; the message names the page and line."""


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    not_run: str | None = None  # the reason, when marked not-run
    file: str | None = None

    @property
    def where(self) -> str:
        try:
            name = self.page.relative_to(ROOT)
        except ValueError:
            name = self.page
        return f"{name}:{self.line}"


def pages() -> list[Path]:
    """README.md and every Markdown page of the guide."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path, text: str | None = None) -> list[Block]:
    """The page's fenced blocks with their markers; a marker without its reason or block is an error."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Block] = []
    markers: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = MARKER.match(line)
        if marker:
            kind, value = marker["kind"], marker["text"]
            if not value:
                what = "a reason (why it cannot run here)" if kind == "not-run" else "a file name"
                raise DocsError(f"{page}:{index + 1}: the {kind} marker needs {what}: <!-- {kind}: ... -->")
            if index + 1 >= len(lines) or not FENCE.match(lines[index + 1]) and not MARKER.match(lines[index + 1]):
                raise DocsError(f"{page}:{index + 1}: the {kind} marker must be on the line just before a block")
            markers[kind] = value
            index += 1
            continue
        fence = FENCE.match(line)
        if fence:
            start, indent, close = index, len(fence["indent"]), fence["fence"]
            body = []
            index += 1
            while index < len(lines) and lines[index].strip() != close:
                body.append(lines[index][indent:] if lines[index][:indent].strip() == "" else lines[index])
                index += 1
            if index >= len(lines):
                raise DocsError(f"{page}:{start + 1}: this block is never closed")
            found.append(Block(page, start + 1, fence["lang"].lower(), "\n".join(body) + "\n",
                               markers.get("not-run"), markers.get("file")))
            markers = {}
        index += 1
    return found


def check_runnable(block: Block) -> None:
    """A block that is not marked must be of a kind this module runs."""
    if block.not_run is None and block.lang not in RUNNERS and not block.file:
        raise DocsError(f"{block.where}: a ```{block.lang or '(no language)'} block is neither run nor marked; "
                        "mark it <!-- not-run: REASON --> or make it a bash, python or toml example")


def environment(home: Path) -> dict[str, str]:
    """The shell of a new user of this checkout: its eetrend first on PATH, no display, no network config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST", "EETREND_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(MPLBACKEND="Agg", HOME=str(home), PYTHONDONTWRITEBYTECODE="1", COLUMNS="120")
    return env


class PageSession:
    """Runs one page's blocks in order, in one folder."""

    def __init__(self, folder: Path, timeout: float = 600.0) -> None:
        self.folder = folder
        self.timeout = timeout
        self.namespace: dict[str, object] = {"__name__": "__docs__"}
        self.home = folder / ".home"
        self.home.mkdir(parents=True, exist_ok=True)

    def run(self, block: Block) -> str:
        """Run one block; returns what it printed; raises :class:`DocsError` naming the block when it fails."""
        check_runnable(block)
        if block.not_run is not None:
            return ""
        if block.file:
            target = self.folder / block.file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
        if block.lang in SHELLS:
            return self._shell(block)
        if block.lang == "python":
            return self._python(block)
        if block.lang == "toml":
            return self._toml(block)
        return ""

    def _shell(self, block: Block) -> str:
        process = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.code], cwd=self.folder,
                                   env=environment(self.home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        try:
            output, _ = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            output = ""
            process.returncode = -1
        finally:
            try:  # nothing a block started (an emulator in the background) outlives it
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
        if process.returncode != 0:
            tail = "\n".join(output.splitlines()[-15:])
            raise DocsError(f"{block.where}: the shell example exited {process.returncode}:\n{block.code}\n"
                            f"--- its output (last lines) ---\n{tail}")
        return output

    def _python(self, block: Block) -> str:
        if block.file:  # a module another example uses: it must at least compile
            try:
                compile(block.code, block.file, "exec")
            except SyntaxError as exc:
                raise DocsError(f"{block.where}: {block.file} does not compile: {exc}") from None
            return ""
        import contextlib
        import io

        output = io.StringIO()
        previous = Path.cwd()
        os.chdir(self.folder)
        try:
            with contextlib.redirect_stdout(output):
                exec(compile(block.code, block.where, "exec"), self.namespace)  # noqa: S102 (the docs' own example)
        except Exception as exc:  # noqa: BLE001 (any failure of the example is the finding)
            raise DocsError(f"{block.where}: the Python example raised {type(exc).__name__}: {exc}") from exc
        finally:
            os.chdir(previous)
            import matplotlib.pyplot as plt

            plt.close("all")
        return output.getvalue()

    def _toml(self, block: Block) -> str:
        from pipeline.config import load_study
        from pipeline.errors import EetrendError

        try:
            data = tomllib.loads(block.code)
        except tomllib.TOMLDecodeError as exc:
            raise DocsError(f"{block.where}: not valid TOML: {exc}") from None
        if block.file and "study" in data:
            path = self.folder / block.file
        else:
            text = block.code if "study" in data else _merge(BASE_CONFIG, block.code)
            path = self.folder / f".config-line-{block.line}.toml"
            path.write_text(text, encoding="utf-8")
        try:
            load_study(path)
        except EetrendError as exc:
            raise DocsError(f"{block.where}: the config loader refuses this config: {exc}") from None
        return ""


def _merge(base: str, fragment: str) -> str:
    """``base`` with the tables of ``fragment`` added or replacing base's tables of the same name."""
    fragment_tables = set(tomllib.loads(fragment))
    kept = {name: table for name, table in tomllib.loads(base).items() if name not in fragment_tables}
    lines = []
    for name, table in kept.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n" + fragment


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def run_page(page: Path, folder: Path, text: str | None = None) -> list[tuple[Block, str]]:
    """Run every block of a page in order in ``folder``; returns each block with its output."""
    session = PageSession(folder)
    return [(block, session.run(block)) for block in blocks(page, text)]
