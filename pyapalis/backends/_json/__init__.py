"""JsonStorage."""
