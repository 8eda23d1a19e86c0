"""Errors the engine reports to a person (command line exit code 2, a report in Blender)."""


class MxrError(Exception):
    """A problem with the user's input or environment, with a message that says what to do."""
