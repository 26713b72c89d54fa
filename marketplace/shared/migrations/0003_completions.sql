-- Completions kept for reuse (agents.cache): greedy decoding is deterministic, so a call with
-- the same model, messages and limits is computed once. Each row keeps the compute it took,
-- so a reused answer still costs what it cost. Benchmarks turn this on; services do not need it.

CREATE TABLE completions (
    key         text PRIMARY KEY,   -- sha256 of model, messages, max_tokens, top_logprobs
    model       text NOT NULL,
    completion  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
