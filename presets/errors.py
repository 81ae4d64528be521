"""Exceptions raised while reading or mapping checkpoints."""


class CheckpointError(ValueError):
    """A checkpoint (directory, config or weight file) cannot be used; the message says why."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The directory, file or Hub id does not exist or cannot be reached."""
