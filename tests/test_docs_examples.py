"""Every example of README.md and the guide runs as written (or says why it cannot run here).

The collector is ``tests/docs_examples.py``: each page's shell, Python and TOML blocks run in
order in an empty folder of their own, as a new user would type them. A change to the program
that makes an example lie (a renamed option, a config key refused, a file no longer written)
fails here.
"""

from __future__ import annotations

import pytest

from tests.docs_examples import ROOT, Block, DocsError, blocks, check_runnable, pages, run_page

PAGES = pages()


@pytest.mark.parametrize("page", PAGES, ids=[str(page.relative_to(ROOT)) for page in PAGES])
def test_every_example_of_the_page_runs_in_order_in_an_empty_folder(page, tmp_path):
    found = blocks(page)
    for block in found:
        check_runnable(block)
    run_page(page, tmp_path)


def test_the_readme_and_the_guide_run_most_of_their_examples():
    """Marking is for what truly cannot run here; most shell and all Python examples do run."""
    every = [block for page in PAGES for block in blocks(page)]
    shells = [block for block in every if block.lang in ("bash", "sh", "shell")]
    run_shells = [block for block in shells if block.not_run is None]
    assert len(run_shells) >= len(shells) // 2, [block.where for block in shells if block.not_run]
    pythons = [block for block in every if block.lang == "python" and block.not_run is None]
    assert len(pythons) >= 3
    tomls = [block for block in every if block.lang == "toml"]
    assert tomls and all(block.not_run is None for block in tomls), "every config shown is loaded"


def test_the_first_readme_blocks_are_the_two_fresh_machine_commands():
    first, second = blocks(ROOT / "README.md")[:2]
    assert first.code.strip().endswith("pip install -e . && eetrend demo")
    assert second.code.strip() == ("python3 -m venv .venv && . .venv/bin/activate && python -m pip install -e "
                                   "'.[dev]' && python -m pytest -q")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert second.code.strip() in ci, ".ci/run must run README's test command verbatim"


# -- the collector catches a lie -----------------------------------------------------------------------------------


def _page(tmp_path, text: str):
    page = tmp_path / "page.md"
    page.write_text(text, encoding="utf-8")
    folder = tmp_path / "run"
    folder.mkdir()
    return page, folder


def test_a_wrong_command_fails_naming_the_page_and_line(tmp_path):
    page, folder = _page(tmp_path, "Fit:\n\n```bash\neetrend sample data --size 8x8 --years 2000-2004\n```\n\n"
                                   "```bash\neetrend trend data -o t.tif --method median\n```\n")
    with pytest.raises(DocsError, match=r"page\.md:7: the shell example exited 2") as caught:
        run_page(page, folder)
    assert "--method median" in str(caught.value)
    assert (folder / "data" / "ndvi_2000.tif").exists(), "the first block ran, in the page's folder"


def test_a_python_example_whose_claim_is_false_fails(tmp_path):
    page, folder = _page(tmp_path, "```python\nimport pipeline\nassert 'slope' in pipeline.band_names('sen')\n```\n")
    with pytest.raises(DocsError, match=r"page\.md:1: the Python example raised AssertionError"):
        run_page(page, folder)


def test_a_config_with_a_key_the_loader_refuses_fails(tmp_path):
    page, folder = _page(tmp_path, "```toml\n[trend]\nmethod = \"sen\"\nmk_tets = \"tfpw\"\n```\n")
    with pytest.raises(DocsError, match=r"page\.md:1: the config loader refuses this config: .*mk_tets"):
        run_page(page, folder)


def test_a_not_run_marker_without_its_reason_is_refused(tmp_path):
    page, _ = _page(tmp_path, "<!-- not-run -->\n```bash\nfalse\n```\n")
    with pytest.raises(DocsError, match=r"page\.md:1: the not-run marker needs a reason"):
        blocks(page)
    page.write_text("<!-- not-run: -->\n```bash\nfalse\n```\n", encoding="utf-8")
    with pytest.raises(DocsError, match="needs a reason"):
        blocks(page)


def test_a_marked_block_is_skipped_and_an_unmarked_foreign_block_is_refused(tmp_path):
    page, folder = _page(tmp_path, "<!-- not-run: a real cron line -->\n```cron\n30 2 * * * eetrend run a.toml\n```\n"
                                   "\n```bash\necho ran > ran.txt\n```\n")
    run_page(page, folder)
    assert (folder / "ran.txt").read_text() == "ran\n"
    with pytest.raises(DocsError, match=r"a ```ini block is neither run nor marked"):
        check_runnable(Block(page, 1, "ini", "[Unit]\n"))


def test_a_file_marker_writes_the_config_that_later_blocks_use(tmp_path):
    page, folder = _page(tmp_path, "<!-- file: s.toml -->\n```toml\n[study]\nname = \"s\"\nyears = \"2000..2004\"\n"
                                   "[region]\nbbox = [10.8, 46.4, 11.0, 46.5]\n[earthengine]\nproject = \"p\"\n```\n"
                                   "\n```bash\ngrep -q 'name = \"s\"' s.toml\n```\n")
    run_page(page, folder)
    assert (folder / "s.toml").exists()


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.toml")), ids=lambda path: path.name)
def test_every_config_the_guide_points_to_is_loaded_by_the_config_loader(config):
    from pipeline.config import load_study

    study = load_study(config)
    assert study.years, f"{config.name} has no year to export"
