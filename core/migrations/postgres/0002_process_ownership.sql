-- Which process works on an order or a job instance: the network id of a workflow or job
-- process (cluster_processes.process_network_id), NULL when none does. sessionid says which
-- master's session owns the work; owner narrows it to one of that master's processes, so
-- the death of one process returns exactly its IN-PROGRESS work to RETRY, and a restarted
-- master that adopts a living process leaves that process's work alone.
ALTER TABLE workflow_instance ADD COLUMN owner TEXT;
CREATE INDEX workflow_instance_owner ON workflow_instance (sessionid, owner, workflow_instanceid);

ALTER TABLE job_instance ADD COLUMN owner TEXT;
CREATE INDEX job_instance_owner ON job_instance (sessionid, owner);
