-- The compute each usage took (Usage.seconds: CPU-seconds for in-process models), next to its
-- tokens and cost, so a task's cost can also be read as measured compute.

ALTER TABLE spend ADD COLUMN seconds double precision NOT NULL DEFAULT 0;

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
    sum(seconds)                                              AS seconds
FROM spend
GROUP BY task_id;
