"""metasignal: a streaming trade-signal service over an investment committee's votes.

The code lives in the repository's top-level ``stream/`` and ``trainer/`` folders; this package
links them in as ``metasignal.stream`` (the scorer side) and ``metasignal.trainer`` (fitting,
publishing and the trainer service). The arrow points one way: trainer imports stream.

>>> import metasignal
>>> metasignal.__version__ == metasignal.version()
True
"""

from importlib import metadata

__all__ = ["__version__", "version"]


def version() -> str:
    """The installed distribution's version (``metasignal --version`` prints it)."""
    try:
        return metadata.version("metasignal")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


__version__ = version()
