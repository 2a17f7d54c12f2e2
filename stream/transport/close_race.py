"""Quiet kafka-python's traceback for a socket its own close took away.

kafka-python 3.0.12 reads a connection on its network thread while ``close()`` on the caller's
thread sets the connection's socket to ``None``; the read then fails with
``AttributeError: 'NoneType' object has no attribute 'recv'`` and the library logs it with
``log.exception`` ("Error receiving network data closing socket") before closing the socket it
was closing anyway. Nothing is lost (the client is going away), but the traceback reaches the
scorer's stderr at every shutdown that hits the race, where an operator reads it as a crash.

:class:`ClosedSocketRace` keeps the record and drops only that traceback: the line stays, at
debug level. Every other error the library logs, connection errors included, is untouched.

>>> import logging
>>> try:
...     None.recv(4096)
... except AttributeError:
...     import sys
...     record = logging.LogRecord("kafka.net.transport", logging.ERROR, "", 0,
...         "%s: Error receiving network data closing socket", ("conn",), sys.exc_info())
>>> ClosedSocketRace().filter(record), record.levelno == logging.DEBUG, record.exc_info
(False, True, None)
"""

from __future__ import annotations

import logging

__all__ = ["ClosedSocketRace", "install"]

LOGGER = "kafka.net.transport"


class ClosedSocketRace(logging.Filter):
    """Turns the closed-socket race's traceback into one debug line (module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, AttributeError) and "'NoneType' object has no attribute" in str(exc):
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            record.msg = f"{record.msg} (the client was closing it)"
            # Demoted after the logger's level check: kept only where debug is wanted.
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


def install() -> None:
    """Add the filter to kafka-python's transport logger (once)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, ClosedSocketRace) for f in logger.filters):
        logger.addFilter(ClosedSocketRace())
