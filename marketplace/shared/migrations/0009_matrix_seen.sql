-- What the agent saw of the task when a matrix cell was computed (marketplace.matrix.seen):
-- a digest of the prompt and the visible examples. A draft is checked against the examples, so
-- a draft cell computed against other examples (the dataset's examples are read anew) is stale
-- and is computed again; its model calls replay from the completions cache. '' = not known.

ALTER TABLE matrix_cells ADD COLUMN seen text NOT NULL DEFAULT '';
