"""One exception type for problems the user can fix; the CLI prints it as a single line, without a traceback."""


class R1sftError(Exception):
    """A user-facing error: the message names the file, row or key and what was expected."""
