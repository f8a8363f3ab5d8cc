"""The embedded stack: servers started from PyPI packages when none is configured."""
