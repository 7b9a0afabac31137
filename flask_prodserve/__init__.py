"""Serve a Flask app in production with one command: ``flask serve``."""

from .cli import serve
from .config import OPTIONS, ServeConfig
from .errors import ConfigError, ProdServeError, ServeError
from .extension import ProdServe

__version__ = "0.1.0"

__all__ = [
    "OPTIONS",
    "ConfigError",
    "ProdServe",
    "ProdServeError",
    "ServeConfig",
    "ServeError",
    "serve",
]
