-- Who vouched for each event: the key id and Ed25519 signature its record carried
-- (marketplace.shared.signing), so `sale replay --verify` can check every stored event against
-- the keyring long after it was recorded. NULL: the record was unsigned (a log older than
-- signatures, or a stack that does not require them).

ALTER TABLE events ADD COLUMN key_id text, ADD COLUMN signature bytea;
