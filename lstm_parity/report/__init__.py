"""Renderers of results: they format, they never compute or compare."""
