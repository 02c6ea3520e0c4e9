"""Service API, as Qorus's Python ``svc`` module offers it (minimal for now).

A service class is instantiated once (protocol op ``create``) and its methods are called
on that object for the life of the service.
"""

from sluice_runner import QorusException, UserApi
from sluice_runner.bases import QorusInterface, sluice_base

__all__ = ["QorusService", "QorusException", "UserApi"]


@sluice_base
class QorusService(QorusInterface):
    def getStateData(self):
        return self._sluice_callback("getStateData")

    def saveStateData(self, data):
        if not isinstance(data, dict):
            raise TypeError("saveStateData() takes a dict")
        return self._sluice_callback("saveStateData", data)

    def getServiceInfo(self):
        return dict(self._sluice_context())
