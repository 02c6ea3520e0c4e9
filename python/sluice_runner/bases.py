"""What every interface base class (step, service, job) shares."""

import copy

from . import context
from .userapi import format_message


class QorusInterface:
    """Base of the classes user code derives from.

    The object remembers the call that created it, so the API works inside ``__init__``
    and from threads user code starts (neither has the worker's current call).
    """

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj._sluice_call = context.current()
        return obj

    def _sluice_context(self):
        call = getattr(self, "_sluice_call", None) or context.current()
        return call.context if call is not None else {}

    def _sluice_callback(self, api, *args):
        return context.callback(api, list(args), getattr(self, "_sluice_call", None))

    def _sluice_get(self, section, keys):
        """Qorus's getter shape: no key = all, one key = its value, several = a dict."""
        data = self._sluice_context().get(section) or {}
        if not keys:
            return copy.deepcopy(data)
        if len(keys) == 1:
            return copy.deepcopy(data.get(keys[0]))
        return {k: copy.deepcopy(data.get(k)) for k in keys}

    def _sluice_log(self, level, fmt, args):
        context.log(level, format_message(fmt, args), getattr(self, "_sluice_call", None))

    def logFatal(self, fmt, *args):
        self._sluice_log("fatal", fmt, args)

    def logError(self, fmt, *args):
        self._sluice_log("error", fmt, args)

    def logWarn(self, fmt, *args):
        self._sluice_log("warn", fmt, args)

    def logInfo(self, fmt, *args):
        self._sluice_log("info", fmt, args)

    def logDebug(self, fmt, *args):
        self._sluice_log("debug", fmt, args)


# The names of these classes are what a load reports as "base"; see Server._class_info.
SLUICE_BASES = set()


def sluice_base(cls):
    """Marks a class as one of the bases user classes derive from."""
    SLUICE_BASES.add(cls)
    return cls


sluice_base(QorusInterface)
