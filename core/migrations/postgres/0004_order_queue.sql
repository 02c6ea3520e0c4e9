-- The order queue a workflow process claims from.
--
-- retry_trigger: when an order in RETRY may run again (milliseconds since the epoch); NULL
-- means at once, which is what crash recovery leaves (a crash is not a business error).
ALTER TABLE workflow_instance ADD COLUMN retry_trigger BIGINT;

-- Claiming reads unowned runnable orders of one workflow in priority, then age, order. The
-- partial index holds only those rows, so a claim is a short index scan however many
-- finished orders the table holds; the claim query repeats the index's condition verbatim
-- so that both planners use it.
CREATE INDEX workflow_instance_runnable ON workflow_instance (workflowid, priority, workflow_instanceid)
    WHERE sessionid = 0 AND workflowstatus IN ('Y', 'R', 'S');

-- Which incarnation of the owner process holds an order: a workflow process that restarts
-- keeps its network id (owner) but not its token, so a process the master gave up on (and
-- whose orders were recovered and claimed again) can never write to them. The engine's
-- writes are guarded by owner and token, not by session: a master that adopts a running
-- process moves its orders to the new session while the process keeps working on them.
ALTER TABLE workflow_instance ADD COLUMN owner_token TEXT;
