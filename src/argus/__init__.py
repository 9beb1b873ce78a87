"""argus: serve LLMs for many users on a Ray cluster."""

__version__ = "3.8.0"
