"""The exceptions users see as one line: bad input (naming the value and what would be valid) and failed runs."""


class UserError(Exception):
    """Bad input from the user. The CLI prints ``error: <message>`` and exits with status 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def choices(names) -> str:
    """Render valid choices for an error message: ``a, b, c``."""
    return ", ".join(sorted(names))


class TrainingFailed(Exception):
    """A run that cannot go on (its loss diverged, its scores became non-finite). The run is marked failed
    with this one-line reason, the user sees that line, and the other cells of a grid go on."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))
