"""The one exception type users see: a single line naming the bad input and what would be valid."""


class UserError(Exception):
    """Bad input from the user. The CLI prints ``error: <message>`` and exits with status 2."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line


def choices(names) -> str:
    """Render valid choices for an error message: ``a, b, c``."""
    return ", ".join(sorted(names))
