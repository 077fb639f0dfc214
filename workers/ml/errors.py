"""Exceptions raised by the ML engine.

The Django side maps these onto model-version states; none of them carries file
contents, only names, so they are safe to log.
"""

from __future__ import annotations


class MLError(Exception):
    """Base class of every error the ML engine raises on purpose."""


class ArtifactIntegrityError(MLError):
    """A file of an artifact is missing, unexpected, or its sha256 differs from the caller's."""


class UnsafeArtifactError(MLError):
    """An artifact asks for something the loader never does.

    Examples: ONNX external data outside the model directory, a symlink or hardlink,
    a pickle where plain tensors were expected.
    """


class TrainingCancelled(MLError):
    """``should_stop()`` returned True; nothing was written to ``out_dir``."""


class TrainingDataError(MLError):
    """The samples cannot train the requested kind (e.g. no good images for anomaly)."""
