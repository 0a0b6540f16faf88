"""Operations on a store named by URL: what the ``pyapalis`` command and the board share.

One place for each rule: opening a backend from a URL (:mod:`._store`), the
errors and the exit codes they map to (:mod:`._errors`), a task as plain
JSON-able data (:mod:`._records`), and the actions (list, show, retry, kill,
purge, counts, workers; :mod:`._actions`), each asking the backend for the
capability protocol it needs and naming it when the backend lacks it. The
command (:mod:`pyapalis._cli`) prints these; the board (:mod:`pyapalis._board`)
serves them as JSON.
"""
