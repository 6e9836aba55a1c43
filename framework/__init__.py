"""End-to-end training on long videos."""
__version__ = "0.1.0"
