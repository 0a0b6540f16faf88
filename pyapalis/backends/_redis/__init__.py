"""RedisStorage: the shared-backend model (``_kit._leases``) on Redis, through coredis.

``_keys`` names every key of a queue (one hash tag per queue), ``_scripts``
holds the Lua scripts that make each store operation one atomic round trip,
``_client`` owns the coredis client of one trio run (errors become
:class:`~pyapalis.StorageError`, NOSCRIPT reloads), ``_store`` is the
:class:`~pyapalis.backends._kit._leases.LeaseStore` plus the capabilities'
queries, ``_storage`` the public :class:`RedisStorage`, and ``_sync`` the
synchronous producer for code outside trio.
"""
