"""SqliteStorage: the embedded shared backend (many processes on one file).

``_schema`` (the versioned schema and its migrations), ``_db`` (one connection
off the trio thread, errors as StorageError, wake-ups), ``_store`` (the SQL of
the shared-backend model: a ``LeaseStore``), ``_storage`` (the public class).
"""
