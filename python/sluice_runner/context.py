"""The call a worker thread is running, and the channel to the host.

User code reaches the host through module-level functions here, so ``UserApi`` (a global
with static methods) can attach the right call id without being handed anything.
"""

import sys
import threading

from .errors import QorusException


class Call:
    """One request in progress: its id and the context JSON object the host sent."""

    __slots__ = ("id", "context")

    def __init__(self, call_id, context):
        self.id = call_id
        self.context = context


_local = threading.local()

# The server installs itself here; None when user code is imported outside a runner
# (a developer's own unit tests), where logging goes to stderr and callbacks fail.
_channel = None


def install(channel):
    global _channel
    _channel = channel


def current():
    """The call this thread is running, or None (a thread user code started itself)."""
    return getattr(_local, "call", None)


def set_current(call):
    _local.call = call


def _call_id(fallback):
    call = current() or fallback
    return call.id if call is not None else None


def callback(api, args, fallback=None):
    """Asks the host to do ``api`` and returns its answer; raises QorusException if refused.

    ``fallback`` is the call of the object making the request, used when this thread is
    not a worker (user code that started its own threads).
    """
    channel = _channel
    if channel is None:
        raise QorusException("NO-HOST", f"{api}: this code is not running inside a Sluice runner")
    return channel.callback(_call_id(fallback), api, args)


def log(level, message, fallback=None):
    channel = _channel
    if channel is None:
        print(f"{level.upper()}: {message}", file=sys.stderr, flush=True)
        return
    channel.log(_call_id(fallback), level, message)
