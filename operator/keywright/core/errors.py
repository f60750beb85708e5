"""The root of the errors Keywright reports to a person.

Owns: `KeywrightError`, which every error meant for the command line derives from (the
API answered with an error, the pepper cannot be had, the local control plane or its
build failed), so the CLI catches one class and prints its message.
Must not: carry a key or a pepper in a message.
"""

from __future__ import annotations


class KeywrightError(RuntimeError):
    """Something went wrong that the message explains to a person; no traceback needed."""
