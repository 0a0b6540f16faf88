"""MemoryStorage."""
