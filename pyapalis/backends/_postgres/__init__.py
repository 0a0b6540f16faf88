"""PostgresStorage: tasks in PostgreSQL, shared by workers on many machines.

``_driver`` talks to the server from trio (psycopg's libpq layer, no thread);
``_schema`` creates and migrates the tables; ``_sql`` holds every statement;
``_store`` runs the store operations of the shared-backend model over a pool of
connections (``_connections``) and the listening session that a trio run shares
among its storages on one server (``_listener``); ``_producer`` pushes from
outside trio and inside a caller's transaction; ``_storage`` is the public class.
"""
