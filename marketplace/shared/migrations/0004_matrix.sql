-- The benchmark's matrix (marketplace.matrix): each agent's round-0 bid on each task, its
-- execution of that plan and the verdict, and its jury scores of every round-0 bid. Events as
-- the marketplace would carry them. `matrix` names the agents' settings the cells come from.

CREATE TABLE matrix_cells (
    matrix      text NOT NULL,
    task_id     text NOT NULL,
    agent_id    text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('bid', 'result', 'outcome', 'review')),
    event       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (matrix, task_id, agent_id, kind)
);
