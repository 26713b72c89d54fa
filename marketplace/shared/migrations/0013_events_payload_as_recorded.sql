-- The log keeps each event's JSON exactly as the recorder wrote it: `json`, not `jsonb`.
--
-- A record is signed over its canonical encoding (marketplace.shared.signing), which keeps an
-- object's keys in the order the event holds them. `jsonb` re-orders keys (shorter first), so
-- an event with a map of several keys (a bid's `jury`, the weights' `jurors`) came back from
-- the log re-encoded differently, and `sale replay --verify` called its genuine signature
-- forged. `json` stores the text as written, and is cheaper to insert (no conversion). The
-- `->` and `->>` operators the readers use work on both.
--
-- Rows recorded before this migration keep the key order `jsonb` gave them: a signature over
-- a map of several keys stored before it may still not verify.

ALTER TABLE events ALTER COLUMN payload TYPE json;
