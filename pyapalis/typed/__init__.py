"""Typed tasks."""
