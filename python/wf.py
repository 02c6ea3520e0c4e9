"""Workflow step API, as Qorus's Python ``wf`` module offers it.

    from wf import QorusNormalStep

    class ReserveStock(QorusNormalStep):
        def primary(self):
            order = self.getStaticData()
            UserApi.logInfo("reserving %s", order["sku"])
            self.updateDynamicData({"reserved": True})

Reads (static data, dynamic data, order keys, ids) come from the context the host sent
with the call and cost no round trip; writes are callbacks the host commits before it
answers, after which the local copy reflects them too.
"""

import json

from sluice_runner import QorusException, StepError, UserApi
from sluice_runner.bases import QorusInterface, sluice_base

__all__ = [
    "QorusStep",
    "QorusNormalStep",
    "QorusException",
    "StepError",
    "UserApi",
    "stepError",
    "StatComplete",
    "StatRetry",
    "StatError",
]

# What validation code returns.
StatComplete = "COMPLETE"
StatRetry = "RETRY"
StatError = "ERROR"


def stepError(err, desc=None, info=None):
    """Fails the step with the error name ``err``."""
    raise StepError(err, desc, info)


def _as_stored(value):
    """The value as the host stores it: JSON turns tuples into lists, keys into strings."""
    return json.loads(json.dumps(value))


@sluice_base
class QorusStep(QorusInterface):
    """Base of all step classes; the step API is available as methods."""

    def getStaticData(self, *keys):
        return self._sluice_get("staticdata", keys)

    def getDynamicData(self, *keys):
        return self._sluice_get("dynamicdata", keys)

    def updateDynamicData(self, data):
        """Merges ``data`` into the order's dynamic data (committed before this returns)."""
        if not isinstance(data, dict):
            raise TypeError("updateDynamicData() takes a dict")
        self._sluice_callback("updateDynamicData", data)
        self._sluice_context().setdefault("dynamicdata", {}).update(_as_stored(data))

    def deleteDynamicDataKey(self, key):
        """Removes ``key`` (or each key of a list) from the order's dynamic data."""
        keys = list(key) if isinstance(key, (list, tuple)) else [key]
        self._sluice_callback("deleteDynamicDataKey", *keys)
        local = self._sluice_context().get("dynamicdata") or {}
        for k in keys:
            local.pop(k, None)

    def getOrderKeys(self, *keys):
        return self._sluice_get("keys", keys)

    def getOrderKey(self, name):
        return self._sluice_get("keys", (name,))

    def setOrderKeys(self, keys):
        """Sets the given order keys (a value is a string or a list of strings)."""
        if not isinstance(keys, dict):
            raise TypeError("setOrderKeys() takes a dict")
        self._sluice_callback("setOrderKeys", keys)
        self._sluice_context().setdefault("keys", {}).update(_as_stored(keys))

    def getWfiid(self):
        return self._sluice_context().get("wfiid")

    def getStepId(self):
        return self._sluice_context().get("stepid")

    def getStepInfo(self):
        ctx = self._sluice_context()
        return {k: ctx.get(k) for k in ("stepid", "stepname", "ind", "retries")}

    def stepError(self, err, desc=None, info=None):
        raise StepError(err, desc, info)


@sluice_base
class QorusNormalStep(QorusStep):
    """A normal (non-array, synchronous) step: ``primary`` and optionally ``validation``."""
