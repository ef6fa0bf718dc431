"""Errors that carry a message meant for a person (the CLI prints it, the app shows it)."""


class UserError(Exception):
    """Bad input or an impossible request; ``str(error)`` is one clear line for the user."""


class ProjectError(UserError):
    """A project file that cannot be opened or written (foreign, newer, damaged, locked, full disk)."""
