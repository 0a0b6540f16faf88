"""``python -m pyapalis``: the ``pyapalis`` command."""

from ._cli import main

raise SystemExit(main())
