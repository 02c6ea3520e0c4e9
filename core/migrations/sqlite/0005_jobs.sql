-- Job instances, as the job engine reads them.
--
-- Starting a run checks that the job has no run IN-PROGRESS: the partial index holds only
-- those rows (at most one per job), so the check stays an index probe however many runs a
-- job has recorded (a job running every second records 86,400 a day).
CREATE INDEX job_instance_running ON job_instance (jobid) WHERE jobstatus = 'I';

-- A job's runs newest first (get-job, get-job-instances).
CREATE INDEX job_instance_newest ON job_instance (jobid, job_instanceid);
