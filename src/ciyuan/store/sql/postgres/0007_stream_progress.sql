-- Progress marks: a long stream records what it has delivered so far (the cost, and the usage
-- event that would bill it) every few seconds. If the gateway dies mid-stream, the sweeper bills
-- the last mark when the hold expires instead of voiding it, so a response that reached the
-- client is charged even though its own settle never ran. NULL: no mark (the hold is voided).
ALTER TABLE reservations ADD COLUMN progress_nanos BIGINT;
ALTER TABLE reservations ADD COLUMN progress_event TEXT;
-- Until when the last mark vouches for its stream (a few mark intervals after it was written):
-- an overdue hold whose stream still marks is alive and left alone; past this, it is dead.
ALTER TABLE reservations ADD COLUMN progress_until_us BIGINT;
