-- Drafts and escalations in the matrix (marketplace.matrix): a cell's `result` and `outcome`
-- are now the agent's draft (the chosen executor, no plan) and its verdict; `escalation` and
-- `escalation_outcome` are a draft written after a cheaper agent's failing one, whose id is the
-- suffix (`escalation:M`). Bids and reviews are kept for the tasks the paper's auction runs on.

ALTER TABLE matrix_cells DROP CONSTRAINT matrix_cells_kind_check;
ALTER TABLE matrix_cells ADD CONSTRAINT matrix_cells_kind_check CHECK (
    kind IN ('bid', 'result', 'outcome', 'review')
    OR kind ~ '^escalation(_outcome)?:[A-Za-z0-9_.:\-]+$'
);
