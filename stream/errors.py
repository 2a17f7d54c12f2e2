"""Errors that reach users as one line, never as a traceback."""

from __future__ import annotations


class MetasignalError(Exception):
    """Base class for every error the CLI reports as a single line (exit code 2)."""


class ArtifactError(MetasignalError):
    """A model artifact was refused: unsigned, tampered, malformed or incompatible."""
