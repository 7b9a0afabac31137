"""Serve a Flask app in production with one command: ``flask serve``."""

__version__ = "0.1.0"
