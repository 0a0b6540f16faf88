"""Project basics: version, licence, build messages, the testing extra, what ships."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pyapalis

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# -- version and licence ------------------------------------------------------------


def test_version_is_written_once_and_read_by_the_build() -> None:
    from pyapalis import _version

    assert re.fullmatch(r"\d+\.\d+\.\d+(?:(?:a|b|rc)\d+)?(?:\.dev\d+)?", pyapalis.__version__)
    assert pyapalis.__version__ == _version.__version__
    project = PYPROJECT["project"]
    assert "version" not in project, "the version lives in pyapalis/_version.py only"
    assert "version" in project["dynamic"]
    dynamic = PYPROJECT["tool"]["setuptools"]["dynamic"]
    assert dynamic["version"] == {"attr": "pyapalis._version.__version__"}


def test_installed_metadata_has_the_same_version() -> None:
    assert importlib.metadata.version("pyapalis") == pyapalis.__version__


def test_licence_file_matches_pyproject() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert PYPROJECT["project"]["license"] == "MIT"
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert "LICENSE" in (ROOT / "MANIFEST.in").read_text(encoding="utf-8").split()


# -- the build ----------------------------------------------------------------------

# setup.py's build_ext, on a plain C file (no Cython needed), with the compiler
# named by $CC.
_BUILD = """
import runpy
import sys

import setuptools
from setuptools import Distribution, Extension
from setuptools.command.build_ext import build_ext

setuptools.setup = lambda **kwargs: None  # load setup.py's definitions only
setup_py, source, out = sys.argv[1:]
BuildExt = runpy.run_path(setup_py, run_name="pyapalis_setup")["CythonBuildExt"]


class PlainC(BuildExt):
    def finalize_options(self) -> None:
        build_ext.finalize_options(self)  # skip cythonize: the source is C already


dist = Distribution(
    {"name": "probe", "ext_modules": [Extension("probe", [source])],
     "cmdclass": {"build_ext": PlainC}}
)
command = dist.get_command_obj("build_ext")
command.build_lib = command.build_temp = out
try:
    dist.run_command("build_ext")
except Exception as error:
    print(f"{type(error).__name__}: {error}")
    sys.exit(1)
"""


def _build(tmp_path: Path, cc: str | None) -> subprocess.CompletedProcess[str]:
    source = tmp_path / "probe.c"
    source.write_text("int probe(void) { return 1; }\n", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "CC"}
    if cc is not None:
        env["CC"] = cc
    return subprocess.run(
        [sys.executable, "-c", _BUILD, str(ROOT / "setup.py"), str(source), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=tmp_path,
    )


def test_a_build_without_a_compiler_says_how_to_install_without_one(tmp_path: Path) -> None:
    proc = _build(tmp_path, cc=str(tmp_path / "no-such-cc"))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # setuptools prints the error as "error: <message>", which pip shows.
    assert proc.stdout.startswith("CompileError: pyapalis: could not compile"), proc.stdout
    assert "no-such-cc" in proc.stdout
    assert "install a C compiler" in proc.stdout
    assert "PYAPALIS_NO_EXTENSIONS=1 pip install" in proc.stdout


def test_the_build_says_it_is_compiling(tmp_path: Path) -> None:
    proc = _build(tmp_path, cc=str(tmp_path / "no-such-cc"))
    first = proc.stderr.splitlines()[0] if proc.stderr else ""
    assert first == "pyapalis: compiling the Cython core (csrc/_core.pyx), about a minute..."


def test_setup_py_names_no_file_that_does_not_exist() -> None:
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    for name in re.findall(r"[\w/]+\.(?:pxd|pxi|pyx)\b", text):
        if "*" not in name:
            assert (ROOT / name).exists() or (ROOT / "csrc" / name).exists(), name


# -- the testing extra --------------------------------------------------------------


def test_pyapalis_testing_without_pytest_names_the_extra() -> None:
    for missing in ("pytest", "pytest_trio"):
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                f"import sys; sys.modules[{missing!r}] = None; import pyapalis.testing",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ROOT,
        )
        assert proc.returncode == 1
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("ImportError: pyapalis.testing needs pytest and pytest-trio"), last
        assert f"({missing} is missing)" in last, last
        assert "pip install 'pyapalis[testing]'" in last, last
    extra = PYPROJECT["project"]["optional-dependencies"]["testing"]
    assert sorted(re.split(r"[<>=]", req)[0] for req in extra) == ["pytest", "pytest-trio"]


# -- what ships ---------------------------------------------------------------------


def _shipped() -> list[Path]:
    """The files an sdist carries: the package, the sources, tests, benchmarks, examples."""
    files = [ROOT / "README.md", ROOT / "setup.py", ROOT / "pyproject.toml"]
    for folder, patterns in {
        "pyapalis": ("*.py", "*.pyi"),
        "csrc": ("*.pyx", "*.pxi"),
        "tests": ("*.py",),
        "benchmarks": ("*.py",),
        "examples": ("*.py",),
    }.items():
        for pattern in patterns:
            files += sorted((ROOT / folder).rglob(pattern))
    return files


def test_nothing_shipped_points_at_notes_outside_the_project() -> None:
    pattern = re.compile(r"DESIGN(?:\.md| §)|STYLE\.md|BACKENDS\.md|\.\./shared")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in _shipped()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_dead_code_is_gone() -> None:
    from pyapalis.backends import _capabilities
    from pyapalis.backends._memory import _storage as _memory

    assert not hasattr(_memory.MemoryStorage, "_after_take")
    assert not hasattr(_capabilities, "unsupported")


# -- private state stays private ------------------------------------------------------


def _private_names_of_classes(tree: ast.Module) -> set[str]:
    """The ``_names`` a module's own classes define: methods, class attributes,
    ``__slots__`` entries and ``self._x = ...`` assignments."""
    names: set[str] = set()
    for cls in (node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)):
        for item in cls.body:
            if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(item.name)
            elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                names.add(item.target.id)
            elif isinstance(item, ast.Assign):
                for target in item.targets:
                    if isinstance(target, ast.Name):
                        names.add(target.id)
                if any(
                    isinstance(t, ast.Name) and t.id == "__slots__" for t in item.targets
                ) and isinstance(item.value, (ast.Tuple, ast.List)):
                    names.update(
                        e.value
                        for e in item.value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    )
        for node in ast.walk(cls):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id in ("self", "cls")
            ):
                names.add(node.attr)
    return names


def _foreign_private_reads(source: str, name: str) -> list[str]:
    """``obj._name`` in module ``source`` where ``_name`` belongs to no class of it.

    ``self._x`` and ``cls._x`` are always the module's own. Any other
    ``obj._x`` is allowed only if a class of the same module defines ``_x``
    (an ``__eq__`` reading ``other._count``, a helper of the module reading
    its class's state): a name no class here defines is another module's
    private state (or a third party's), read from outside.
    """
    tree = ast.parse(source)
    own = _private_names_of_classes(tree)
    return [
        f"{name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
        and node.attr not in own
    ]


def test_no_module_reads_another_modules_private_attributes() -> None:
    offenders = [
        line
        for path in sorted((ROOT / "pyapalis").rglob("*.py"))
        for line in _foreign_private_reads(
            path.read_text(encoding="utf-8"), str(path.relative_to(ROOT))
        )
    ]
    assert offenders == []


def test_the_private_attribute_scan_finds_what_it_should() -> None:
    source = (
        "import os\n"
        "class Mine:\n"
        "    __slots__ = ('_slot',)\n"
        "    def __init__(self):\n"
        "        self._state = 1\n"
        "    def same(self, other):\n"
        "        return other._state + other._slot + self._whatever\n"
        "def helper(mine):\n"
        "    return mine._state, os._exit, mine._elsewhere\n"
    )
    found = _foreign_private_reads(source, "sample.py")
    assert [line.split(": ", 1)[1] for line in found] == ["os._exit", "mine._elsewhere"]
