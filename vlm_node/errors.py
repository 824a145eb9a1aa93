"""One exception tree for the package: callers catch `VlmNodeError` or a precise subclass."""
from __future__ import annotations


class VlmNodeError(Exception):
    """Base class of every error raised on purpose by vlm_node."""


class ConfigError(VlmNodeError, ValueError):
    """A configuration value is invalid; the message names the parameter and the accepted range."""


class ImageConversionError(VlmNodeError, ValueError):
    """An image message cannot be turned into pixels (or pixels into a message)."""


class UnsupportedEncodingError(ImageConversionError):
    """The `encoding` (or compressed `format`) is not one this package converts."""


class MalformedImageError(ImageConversionError):
    """Header fields and data disagree: wrong step, truncated data, zero or absurd size."""


class ImageDecodeError(ImageConversionError):
    """Compressed data (JPEG/PNG) could not be decoded."""


class AnonymizationError(VlmNodeError):
    """Anonymization could not be completed; the frame must not be released."""


class AnalysisError(VlmNodeError):
    """An analysis backend failed on a frame (the node falls back or drops the result)."""


class BackendUnavailableError(AnalysisError):
    """A backend cannot be loaded or reached (missing model, server down, circuit open)."""


class ModelOutputError(AnalysisError):
    """Model output could not be parsed into the output schema at all."""


class BagError(VlmNodeError):
    """A rosbag2 cannot be opened, read or written (missing, corrupt, truncated, unsupported)."""
