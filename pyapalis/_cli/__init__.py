"""The ``pyapalis`` command (also ``python -m pyapalis``).

:mod:`._main` parses the arguments (argparse) and turns every
:class:`~pyapalis._ops._errors.OperationError` into one line on stderr and its
exit code; :mod:`._worker` loads and runs ``worker MODULE:ATTR``;
:mod:`._output` prints aligned tables or JSON. The actions themselves live in
:mod:`pyapalis._ops`, shared with the board.
"""

from ._main import main as main

__all__ = ["main"]
