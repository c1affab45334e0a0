"""The errors biglittle raises on bad input. Each says what was wrong and what to do.

They all derive from `BigLittleError` (a `ValueError`), so callers can catch one type.
"""


class BigLittleError(ValueError):
    """Base class for every error biglittle raises on purpose."""


class ConfigError(BigLittleError):
    """A policy or sampling parameter is out of range."""


class ModelSpecError(BigLittleError):
    """A model spec could not be understood or loaded."""


class VocabMismatchError(BigLittleError):
    """The small and big models do not share a vocabulary."""


class PromptError(BigLittleError):
    """The prompt is empty, too long, or not something we can tokenize."""


class RemoteError(BigLittleError):
    """A remote model server is down, too slow, or answered something we cannot use."""
