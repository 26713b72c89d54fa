-- A record's identity in the log is its event id, not its position in Kafka. Positions start
-- again at 0 on a new broker (the embedded Tansu of each `sale up`, a cluster rebuilt), while the
-- Postgres log lives on: keyed by position, the events of a second run that land where the
-- first run's did were refused as "delivered again" and lost. An event delivered again, or
-- written twice by a retrying producer, carries the same event id, so it is still refused once.

ALTER TABLE events DROP CONSTRAINT events_topic_partition_offset_key;
DROP INDEX events_event_id;
CREATE UNIQUE INDEX events_event_id ON events (event_id);
