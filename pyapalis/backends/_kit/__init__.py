"""The backend kit."""
