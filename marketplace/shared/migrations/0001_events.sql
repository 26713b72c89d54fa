-- The event log and the projections the recorder keeps beside it.
--
-- `events` is the log: one row per Kafka record, unique by its position, so a record that is
-- delivered again (after a crash, before the offset commit) is refused by the constraint and
-- nothing is written twice. It is append-only: rows are never updated or deleted.
--
-- The other tables are projections: they hold nothing the log does not, and the recorder updates
-- them in the same transaction as the append. Events of one task travel on different topics and
-- may arrive in any order, so each event fills only its own columns, and the first event to fill
-- them wins (upserts guarded by "not yet set"): applying an event twice changes nothing.

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    topic       text        NOT NULL,
    partition   integer     NOT NULL,
    "offset"    bigint      NOT NULL,
    key         bytea,
    type        text        NOT NULL,
    event_id    uuid        NOT NULL,
    task_id     text,
    agent_id    text,
    producer    text        NOT NULL,
    occurred_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    payload     jsonb       NOT NULL,
    UNIQUE (topic, partition, "offset")
);
CREATE INDEX events_task ON events (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX events_type ON events (type, id);
CREATE INDEX events_event_id ON events (event_id);

CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % refused', TG_OP;
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();

-- One row per task: the task as posted and the auction's decisions.
CREATE TABLE auctions (
    task_id              text PRIMARY KEY,
    kind                 text,
    tenant               text,
    prompt               text,
    budget               double precision,
    posted_at            timestamptz,
    opened_at            timestamptz,
    agents               jsonb,             -- live agents expected to bid (AuctionOpened)
    refinement_at        timestamptz,
    provisional_bid_id   uuid,
    provisional_agent_id text,
    provisional_score    double precision,
    closed_at            timestamptz,
    reason               text,              -- awarded, refined, no_bids, no_eligible_bids
    winner_agent_id      text,
    winner_bid_id        uuid,
    winning_plan         text,
    weights              jsonb
);

-- One row per bid: as submitted (BidSubmitted), and its score terms (AuctionClosed).
-- A bid the auction closed on without ever recording its submission has only the latter.
CREATE TABLE bids (
    bid_id            uuid PRIMARY KEY,
    task_id           text    NOT NULL,
    agent_id          text    NOT NULL,
    round             smallint NOT NULL,
    price             double precision NOT NULL,
    plan_tokens       bigint  NOT NULL,
    entropy           double precision NOT NULL,
    event_id          uuid,
    model             text,
    plan              text,
    memory_refs       jsonb,
    requests          bigint,
    prompt_tokens     bigint,
    completion_tokens bigint,
    usage_cost        double precision,
    submitted_at      timestamptz,
    jury              jsonb,             -- juror → score or null, as the auction counted them
    cost              double precision,  -- C = w_c · price · plan_tokens
    value             double precision,  -- V = w_h · entropy + Σ w_j · score_j
    score             double precision,  -- C − V, lower wins
    eligible          boolean,
    ineligible_reason text,
    won               boolean
);
CREATE INDEX bids_task ON bids (task_id);
CREATE INDEX bids_agent ON bids (agent_id);

-- One review per juror, round and task: the first one recorded.
CREATE TABLE reviews (
    task_id           text     NOT NULL,
    juror             text     NOT NULL,
    round             smallint NOT NULL,
    event_id          uuid     NOT NULL,
    scores            jsonb    NOT NULL,  -- bid_id → score or null
    requests          bigint   NOT NULL,
    prompt_tokens     bigint   NOT NULL,
    completion_tokens bigint   NOT NULL,
    usage_cost        double precision NOT NULL,
    submitted_at      timestamptz NOT NULL,
    PRIMARY KEY (task_id, juror, round)
);

-- Bids and reviews the auction did not count, and why.
CREATE TABLE rejections (
    rejected_event_id uuid PRIMARY KEY,
    task_id           text NOT NULL,
    agent_id          text NOT NULL,
    submission        text NOT NULL,
    bid_id            uuid,
    reason            text NOT NULL,
    detail            text NOT NULL,
    rejected_at       timestamptz NOT NULL
);
CREATE INDEX rejections_task ON rejections (task_id);

CREATE TABLE results (
    task_id           text NOT NULL,
    bid_id            uuid NOT NULL,
    agent_id          text NOT NULL,
    event_id          uuid NOT NULL,
    output            text NOT NULL,
    error             text,
    duration_s        double precision NOT NULL,
    cost              double precision NOT NULL,
    requests          bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    usage_cost        double precision NOT NULL,
    finished_at       timestamptz NOT NULL,
    PRIMARY KEY (task_id, bid_id)
);

CREATE TABLE outcomes (
    task_id    text PRIMARY KEY,
    event_id   uuid NOT NULL,
    passed     boolean NOT NULL,
    score      double precision NOT NULL,
    details    text NOT NULL,
    decided_at timestamptz NOT NULL
);

-- Every priced LLM usage, once per event: what a task cost, and in which part of its life.
-- Rejected bids and reviews count too: their tokens were spent.
CREATE TABLE spend (
    event_id          uuid PRIMARY KEY,
    task_id           text   NOT NULL,
    agent_id          text   NOT NULL,
    part              text   NOT NULL CHECK (part IN ('bids', 'refinement', 'jury', 'execution')),
    requests          bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    cost              double precision NOT NULL
);
CREATE INDEX spend_task ON spend (task_id);

CREATE VIEW task_costs AS
SELECT
    task_id,
    coalesce(sum(cost) FILTER (WHERE part = 'bids'), 0)       AS bids,
    coalesce(sum(cost) FILTER (WHERE part = 'refinement'), 0) AS refinement,
    coalesce(sum(cost) FILTER (WHERE part = 'jury'), 0)       AS jury,
    coalesce(sum(cost) FILTER (WHERE part = 'execution'), 0)  AS execution,
    sum(cost)                                                 AS total,
    sum(prompt_tokens + completion_tokens)                    AS tokens,
    sum(requests)                                             AS requests
FROM spend
GROUP BY task_id;
