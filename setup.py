"""Build script: compiles ``csrc/_core.pyx`` into ``pyapalis._core``.

Cython is imported lazily inside ``build_ext`` so that metadata-only commands
(``egg_info``, sdist listing) work without it. Environment switches:

``PYAPALIS_NO_EXTENSIONS=1``
    Skip the extension entirely; the package runs on its pure-Python twin.
``PYAPALIS_CYTHON_ANNOTATE=1``
    Write an HTML annotation next to each ``.pyx`` (yellow lines = Python API calls).
``PYAPALIS_CYTHON_TRACE=1``
    Compile with line tracing so coverage.py / profilers see ``.pyx`` lines.
``PYAPALIS_DEBUG_BUILD=1``
    ``-O0 -g`` with Cython's bounds and wraparound checks switched back on.

Compiling takes 40 seconds to a minute; ``build_ext`` says so before it starts (pip
shows a build's output with ``pip install -v``, or when the build fails). A
build that fails for want of a C compiler says how to install without one.
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


NO_EXTENSIONS = _flag("PYAPALIS_NO_EXTENSIONS") or sys.implementation.name != "cpython"
ANNOTATE = _flag("PYAPALIS_CYTHON_ANNOTATE")
TRACE = _flag("PYAPALIS_CYTHON_TRACE")
DEBUG = _flag("PYAPALIS_DEBUG_BUILD")


COMPILING = "pyapalis: compiling the Cython core (csrc/_core.pyx), about a minute..."

NO_COMPILER_HINT = """pyapalis: could not compile its Cython core (csrc/_core.pyx):
    {error}
Either install a C compiler and the Python headers (Debian/Ubuntu: apt install gcc
python3-dev; Fedora: dnf install gcc python3-devel; macOS: xcode-select --install), or
install pyapalis without its compiled core, on the pure-Python twin (same API, slower),
by running the same command with PYAPALIS_NO_EXTENSIONS=1 in front, e.g.
    PYAPALIS_NO_EXTENSIONS=1 pip install -e '.[dev]'"""


class CythonBuildExt(build_ext):
    """Cythonize at build time, with the directives chosen by the environment."""

    def finalize_options(self) -> None:
        from Cython.Build import cythonize

        directives: dict[str, Any] = {
            "language_level": "3",
            "boundscheck": DEBUG,
            "wraparound": DEBUG,
            "initializedcheck": DEBUG,
            "cdivision": True,
            "embedsignature": True,
        }
        macros: list[tuple[str, str | None]] = []
        if TRACE:
            directives["linetrace"] = True
            directives["profile"] = True
            macros.append(("CYTHON_TRACE", "1"))
            macros.append(("CYTHON_TRACE_NOGIL", "1"))
        for ext in self.distribution.ext_modules or []:
            ext.define_macros = (ext.define_macros or []) + macros
            if DEBUG:
                ext.extra_compile_args = ["-O0", "-g3"]
            else:
                ext.extra_compile_args = ["-O2"]
        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            compiler_directives=directives,
            annotate=ANNOTATE,
            force=TRACE or DEBUG,
        )
        super().finalize_options()

    def build_extensions(self) -> None:
        if self.extensions:
            print(COMPILING, file=sys.stderr, flush=True)
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except (CCompilerError, CompileError, ExecError, LinkError, PlatformError) as error:
            # setuptools prints the error as "error: <message>" and fails.
            raise CompileError(NO_COMPILER_HINT.format(error=error)) from error


ext_modules = (
    []
    if NO_EXTENSIONS
    else [
        Extension(
            "pyapalis._core", sources=["csrc/_core.pyx"], depends=sorted(glob.glob("csrc/*.pxi"))
        )
    ]
)

setup(ext_modules=ext_modules, cmdclass={"build_ext": CythonBuildExt})
