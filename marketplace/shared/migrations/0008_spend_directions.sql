-- Tokens by direction in the spend projection. Agents now charge per direction (an input, an
-- output and a cached input price, `schemas.events.Price`), so what a task spent can only be
-- priced again (`sale report`, another price table) from its prompt, generated and held tokens
-- apart. `spend` already keeps prompt_tokens and completion_tokens; it gains cached_tokens, the
-- prompt tokens the backend already held evaluated (Usage.cached_tokens). Rows written before
-- this migration held none as far as the log knows: 0.
--
-- task_costs gains the three sums after its existing columns (CREATE OR REPLACE VIEW may only
-- add columns at the end, which keeps every reader of the old columns working).

ALTER TABLE spend ADD COLUMN cached_tokens bigint NOT NULL DEFAULT 0;

CREATE OR REPLACE VIEW task_costs AS
SELECT
    task_id,
    coalesce(sum(cost) FILTER (WHERE part = 'bids'), 0)       AS bids,
    coalesce(sum(cost) FILTER (WHERE part = 'refinement'), 0) AS refinement,
    coalesce(sum(cost) FILTER (WHERE part = 'jury'), 0)       AS jury,
    coalesce(sum(cost) FILTER (WHERE part = 'execution'), 0)  AS execution,
    sum(cost)                                                 AS total,
    sum(prompt_tokens + completion_tokens)                    AS tokens,
    sum(requests)                                             AS requests,
    sum(seconds)                                              AS seconds,
    sum(prompt_tokens)                                        AS prompt_tokens,
    sum(completion_tokens)                                    AS completion_tokens,
    sum(cached_tokens)                                        AS cached_tokens
FROM spend
GROUP BY task_id;
