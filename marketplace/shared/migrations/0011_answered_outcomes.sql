-- General tasks (a prompt answered as text) hide nothing to check: the verifier records their
-- answer with neither a verdict nor a score (TaskOutcome.passed and .score None), so both
-- columns of `outcomes` may now be NULL. Rows written before stay as they are.

ALTER TABLE outcomes ALTER COLUMN passed DROP NOT NULL;
ALTER TABLE outcomes ALTER COLUMN score DROP NOT NULL;
