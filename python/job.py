"""Job API, as Qorus's Python ``job`` module offers it (minimal for now).

    from job import QorusJob

    class Cleanup(QorusJob):
        def run(self):
            self.saveInfo({"removed": 3})
"""

from sluice_runner import QorusException, UserApi
from sluice_runner.bases import QorusInterface, sluice_base

__all__ = ["QorusJob", "QorusException", "UserApi"]


@sluice_base
class QorusJob(QorusInterface):
    def run(self):
        raise NotImplementedError("a job class must define run()")

    def getInfo(self):
        """The context the host sent for this job run (job id, instance id, ...)."""
        return dict(self._sluice_context())

    def getJobInstanceId(self):
        return self._sluice_context().get("job_instanceid")

    def saveInfo(self, info):
        """Saves ``info`` with the job instance."""
        if not isinstance(info, dict):
            raise TypeError("saveInfo() takes a dict")
        return self._sluice_callback("saveInfo", info)

    def getStateData(self):
        return self._sluice_callback("getStateData")

    def saveStateData(self, data):
        if not isinstance(data, dict):
            raise TypeError("saveStateData() takes a dict")
        return self._sluice_callback("saveStateData", data)
