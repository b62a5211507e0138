"""keyless: a self-hosted Python package index with Trusted Publishing built in."""

__version__ = "0.1.0"
