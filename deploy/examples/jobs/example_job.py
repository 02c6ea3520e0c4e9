import datetime

from job import QorusJob


class ExampleJob(QorusJob):
    def run(self):
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.logInfo("EXAMPLE-JOB ran at %s", now)
        # Saved with this job instance, shown with the job's results.
        self.saveInfo({"ran_at": now})
