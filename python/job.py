"""Job API, as Qorus's Python ``job`` module offers it.

    from job import QorusJob

    class Cleanup(QorusJob):
        def run(self):
            self.saveInfo({"removed": 3})

State data (``getStateData``/``saveStateData``) lives until a run of the job ends
COMPLETE, so a run that failed can resume where it stopped; persistent state data
(``getPersistentStateData``/``savePersistentStateData``) is kept across all runs.
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
        """Replaces the job's state data (committed before it returns); cleared when a run
        ends COMPLETE."""
        if not isinstance(data, dict):
            raise TypeError("saveStateData() takes a dict")
        return self._sluice_callback("saveStateData", data)

    def getPersistentStateData(self):
        """The job's persistent state data (a dict), or None if none was saved."""
        return self._sluice_callback("getPersistentStateData")

    def savePersistentStateData(self, data):
        """Replaces the job's persistent state data (committed before it returns); kept
        across every run."""
        if not isinstance(data, dict):
            raise TypeError("savePersistentStateData() takes a dict")
        return self._sluice_callback("savePersistentStateData", data)
