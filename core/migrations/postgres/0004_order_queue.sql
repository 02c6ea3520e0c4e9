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
