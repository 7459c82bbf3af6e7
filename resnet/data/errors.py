"""The error of bad data: a missing, incomplete or unreadable data set, in one line naming the fix."""
from __future__ import annotations


class DataError(ValueError):
    """Missing or malformed data; the message is one line naming the path and the fix."""
