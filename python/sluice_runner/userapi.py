"""``UserApi``: the global that interface code calls without importing it."""

import collections.abc
import time

from . import context


def format_message(fmt, args):
    """printf-style formatting as Qorus's log functions do it.

    A format that does not match its arguments logs both rather than raising: a log line
    must never be what fails a step.
    """
    if not isinstance(fmt, str):
        fmt = str(fmt)
    if not args:
        return fmt
    if len(args) == 1 and isinstance(args[0], collections.abc.Mapping):
        args = args[0]
    try:
        return fmt % args
    except (TypeError, ValueError, KeyError):
        values = args.values() if isinstance(args, collections.abc.Mapping) else args
        return " ".join([fmt, *map(repr, values)])


class UserApi:
    """The system API available to all interface code."""

    @staticmethod
    def logFatal(fmt, *args):
        context.log("fatal", format_message(fmt, args))

    @staticmethod
    def logError(fmt, *args):
        context.log("error", format_message(fmt, args))

    @staticmethod
    def logWarn(fmt, *args):
        context.log("warn", format_message(fmt, args))

    @staticmethod
    def logInfo(fmt, *args):
        context.log("info", format_message(fmt, args))

    @staticmethod
    def logDebug(fmt, *args):
        context.log("debug", format_message(fmt, args))

    @staticmethod
    def raiseEvent(info):
        """Raises a user event carrying ``info`` (any JSON value)."""
        return context.callback("raiseEvent", [info])

    @staticmethod
    def callService(name, method, *args):
        """Calls ``method`` of the service ``name`` and returns its result."""
        return context.callback("callService", [name, method, *args])

    @staticmethod
    def createOrder(workflow_name, data, version=None):
        """Creates an order of ``workflow_name`` (latest version unless given); returns its id.

        ``data`` has Qorus's createOrder keys: ``staticdata``, ``dynamicdata``,
        ``orderkeys``, ``priority``, ``scheduled``, ``global_unique_key``,
        ``workflow_specific_unique_key``, ``workflow_unique_key``, ``status``.
        """
        if not isinstance(data, collections.abc.Mapping):
            raise TypeError("createOrder() data must be a dict")
        return context.callback("createOrder", [workflow_name, dict(data), version])

    @staticmethod
    def sleep(secs):
        time.sleep(secs)
