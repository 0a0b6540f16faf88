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
"""

from __future__ import annotations

import glob
import os
import sys
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


NO_EXTENSIONS = _flag("PYAPALIS_NO_EXTENSIONS") or sys.implementation.name != "cpython"
ANNOTATE = _flag("PYAPALIS_CYTHON_ANNOTATE")
TRACE = _flag("PYAPALIS_CYTHON_TRACE")
DEBUG = _flag("PYAPALIS_DEBUG_BUILD")


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
            # The project root is on the include path so ``pyapalis/_core.pxd``
            # would be found by its qualified name (a .pxd beside csrc/_core.pyx
            # is silently ignored by Cython).
            include_path=[ROOT],
            force=TRACE or DEBUG,
        )
        super().finalize_options()


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
