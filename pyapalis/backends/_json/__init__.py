"""JsonStorage: a crash-safe persistent backend in one JSON-lines file.

``_journal`` writes and replays the file (group-commit fsync, compaction, the
lock); ``_store`` is the state of one file in a process, shared by every
handle; ``_storage`` is the public handle, with its codec.
"""
