"""The producer process of the SQLite crash soak: push_sync forever, logging each acknowledged id.

``python tests/_soak_producer.py URL LOG START``: pushes ``START``, ``START+1``...
one by one with ``push_sync`` (no trio: a plain thread, as a web view would)
and appends each id to ``LOG`` once ``push_sync`` has returned it, until killed.
"""

from __future__ import annotations

import sys

from pyapalis import open_backend


def main(url: str, log_path: str, start: int) -> None:
    storage = open_backend(url)
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        number = start
        while True:
            task_id = storage.push_sync(number)
            log.write(f"{task_id}\n")
            number += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
