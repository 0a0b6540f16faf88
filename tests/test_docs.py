"""The documentation site cannot rot: its samples run, its reference covers the API.

* Every ```python block of the pages under docs/ runs as shown, by the same rule
  as README.md's (``tests/test_readme.py`` owns it: modes, environment, checks);
  a page marks a block with ``<!-- docs-test: MODE -->`` where the README says
  ``readme-test``.
* The API reference (docs/reference/) has a ``::: module.name`` entry for every
  name of each public module's ``__all__``, and nothing that is not public
  (``python -m tests.test_docs`` writes the pages from the ``__all__`` lists).
* ``mkdocs build --strict`` passes: no broken link or anchor, no page left out of
  the navigation, no reference that mkdocstrings cannot resolve.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests import test_readme
from tests._optional import needs

ROOT = test_readme.ROOT
DOCS = ROOT / "docs"
PUBLIC_MODULES = [
    "pyapalis",
    "pyapalis.backends",
    "pyapalis.layers",
    "pyapalis.typed",
    "pyapalis.embed",
    "pyapalis.testing",
    "pyapalis.workflow",
]
PAGES = sorted(DOCS.rglob("*.md"))
PYTHON = [block for page in PAGES for block in test_readme.blocks(page) if block.lang == "python"]

# A block that needs a part of pyapalis that other branches are adding says so with
# its mode, and is skipped (naming it) until the part is in pyapalis: the server
# modes are the README runner's (it skips without the server, never in CI);
# "requires NAME" runs as a plain script.
_NEEDS_NAME = {
    "script, needs postgres": "PostgresStorage",
    "needs redis": "RedisStorage",
}
_REQUIRES = re.compile(r"requires (?P<name>\w+)")


def test_the_guides_have_their_samples() -> None:
    guides = sorted((DOCS / "guides").glob("*.md"))
    assert len(guides) >= 14
    # Every guide that explains code shows code that runs.
    without = [
        page.name
        for page in guides
        if not any(block.source.endswith(page.name) for block in PYTHON)
        and page.name not in {"operations.md", "performance.md"}
    ]
    assert without == []


@pytest.mark.parametrize("block", PYTHON, ids=[f"{b.source}:{b.line}" for b in PYTHON])
def test_docs_block_runs_as_shown(block: test_readme.Block, tmp_path: Path) -> None:
    requires = _REQUIRES.fullmatch(block.mode)
    name = requires["name"] if requires else _NEEDS_NAME.get(block.mode)
    if name is not None and not hasattr(importlib.import_module("pyapalis"), name):
        pytest.skip(f"pyapalis has no {name} on this branch yet ({block.source})")
    if requires:
        block = dataclasses.replace(block, mode="script")
    test_readme.run_block(block, tmp_path)


_INTRO = {
    "pyapalis": "What most programs use: tasks, the common backends, workers, the Monitor, "
    "typed tasks, embedding and every error.",
    "pyapalis.backends": "Every backend, codecs, pipes, polling backends, and the protocols "
    "a backend author implements.",
    "pyapalis.layers": "Middleware: the Service and Layer protocols and the built-in layers.",
    "pyapalis.typed": "Backie-style typed background tasks and worker pools.",
    "pyapalis.embed": "A worker on its own thread, for programs that are not trio programs.",
    "pyapalis.testing": "`TestWorker`, `WallClock` and the backend conformance suites.",
    "pyapalis.workflow": "Durable workflows: chains of steps, delays, fan-out and fan-in, each "
    "step a task of your backend.",
}


def reference_page(module: str) -> str:
    """The reference page of ``module``: one mkdocstrings entry per name of its ``__all__``."""
    names = importlib.import_module(module).__all__
    lines = [
        f"# `{module}`",
        "",
        _INTRO[module],
        "",
        f"Every name in `{module}.__all__`, in the order the module lists them; each entry is",
        "generated from the docstring (`python -m tests.test_docs` rewrites this page).",
        "",
    ]
    for name in names:
        lines += [f"::: {module}.{name}", ""]
    return "\n".join(lines)


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_the_reference_covers_every_public_name(module: str) -> None:
    page = DOCS / "reference" / f"{module}.md"
    assert page.is_file(), f"no reference page for {module}: run python -m tests.test_docs"
    expected = reference_page(module)
    documented = set(re.findall(r"^::: [\w.]+\.(\w+)$", page.read_text(encoding="utf-8"), re.M))
    public = set(importlib.import_module(module).__all__)
    assert sorted(public - documented) == [], f"missing from {page.name}: python -m tests.test_docs"
    assert sorted(documented - public) == [], f"not in {module}.__all__: python -m tests.test_docs"
    assert page.read_text(encoding="utf-8") == expected, "python -m tests.test_docs rewrites it"


def test_the_measured_figures_are_the_readmes() -> None:
    # The backends guide copies its throughput table from the README's measurements:
    # a figure re-measured there must be updated here, not left stale.
    guide = (DOCS / "guides" / "backends.md").read_text(encoding="utf-8")
    table = guide.split("## Measured throughput", 1)[1].split("\n\n")[2]
    figures = re.findall(r"\| (\d[\d.]*[kM]?) \|", table)
    assert len(figures) >= 7
    readme = test_readme.README.read_text(encoding="utf-8")
    assert [f for f in figures if not re.search(rf"\b{re.escape(f)}\b", readme)] == []


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = [page.relative_to(DOCS).as_posix() for page in PAGES]
    assert [page for page in pages if f": {page}" not in nav] == []


@needs("mkdocs", "docs")
@needs("mkdocstrings_handlers.python", "docs")
@needs("material", "docs")
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    # --strict turns every warning into a failure: a broken link or anchor, a page
    # missing from the navigation, a `::: name` that does not resolve.
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    reference = (tmp_path / "reference" / "pyapalis" / "index.html").read_text(encoding="utf-8")
    assert 'id="pyapalis.WorkerBuilder"' in reference  # mkdocstrings rendered the entries
    assert ":class:<code>" not in reference  # docs/_hooks/sphinx_roles.py ran


if __name__ == "__main__":
    for module in PUBLIC_MODULES:
        (DOCS / "reference" / f"{module}.md").write_text(reference_page(module), encoding="utf-8")
