"""The package version, in its own module so that ``core`` can stamp it into ``config.json`` without importing the top level."""

__version__ = "0.1.0"
