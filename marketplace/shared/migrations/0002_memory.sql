-- The auction memory: one embedding (all-MiniLM-L6-v2, normalised) per closed auction's task.
--
-- Stored as a plain float8[] so the schema works on any Postgres; where the pgvector extension
-- exists, the retrieval query casts it to `vector` and lets the server rank. Rows are derived
-- from `auctions` (a cache of a pure function of the prompt): written once, never changed.

CREATE TABLE task_embeddings (
    task_id    text PRIMARY KEY,
    prompt     text,
    embedding  float8[] NOT NULL,
    created_at timestamptz DEFAULT now()
);
