"""Exceptions user code sees, and how any exception becomes a protocol error object."""

import os
import traceback

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_API_FILES = {
    os.path.join(os.path.dirname(_PACKAGE_DIR), name) for name in ("wf.py", "svc.py", "job.py")
}


class QorusException(Exception):
    """An error with a Qorus-style name (``err``) and description (``desc``).

    The runner raises it in user code when the host refuses a callback, with ``err`` set
    to the host's error code; left uncaught, it fails the call under that name. User code
    may raise it too.
    """

    def __init__(self, err, desc="", info=None):
        super().__init__(err, desc)
        self.err = str(err)
        self.desc = "" if desc is None else str(desc)
        self.info = info

    def __str__(self):
        return f"{self.err}: {self.desc}" if self.desc else self.err


class StepError(QorusException):
    """Raised by step code to fail the step with the error name ``err``."""

    def __init__(self, err, desc=None, info=None):
        super().__init__(err, desc, info)


def _ours(filename):
    return filename.startswith(_PACKAGE_DIR) or filename in _API_FILES


def _user_traceback(exc):
    """The traceback text of user code.

    The runner's frames that led into user code are cut, and so are the API's frames
    after the last user frame (a refused callback raises deep inside ``UserApi``): the
    user's own line is the one to show.
    """
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    frames = list(te.stack)
    while frames and _ours(frames[0].filename):
        frames.pop(0)
    while frames and _ours(frames[-1].filename):
        frames.pop()
    te.stack = traceback.StackSummary.from_list(frames)
    return "".join(te.format())


def describe(exc):
    """The protocol's error object for an exception raised by user code."""
    err = getattr(exc, "err", None)
    desc = getattr(exc, "desc", None)
    try:
        message = desc if isinstance(desc, str) else str(exc)
    except Exception:
        message = f"<{type(exc).__name__} whose str() fails>"
    try:
        trace = _user_traceback(exc)
    except Exception:
        trace = ""
    return {
        "type": err if isinstance(err, str) and err else type(exc).__name__,
        "message": message,
        "traceback": trace,
        "info": getattr(exc, "info", None),
    }
