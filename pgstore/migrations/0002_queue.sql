-- The delivery queue (package queue, PGQueue). Times are unix milliseconds
-- of the queue's clock, except lease_until, which is the database's clock
-- (every sidecar reads the same one). Ids and keys compare bytewise
-- (COLLATE "C"), as the queue compares them in Go, whatever the database's
-- collation.

-- One row per delivery: its record, its envelope (sent verbatim on every
-- attempt), its lease while an attempt holds it, and its attempt log (the
-- latest entries, oldest first).
CREATE TABLE queue_deliveries (
    id          text COLLATE "C" PRIMARY KEY, -- aidx: sorts by creation
    hook        text COLLATE "C" NOT NULL,
    user_id     text NOT NULL,
    event       text NOT NULL,              -- the envelope's eventId
    type        text NOT NULL,
    created     bigint NOT NULL,
    state       text NOT NULL CHECK (state IN ('ready', 'delivered', 'dead', 'held')),
    attempts    integer NOT NULL DEFAULT 0, -- failed attempts since enqueue or the last redelivery
    logged      integer NOT NULL DEFAULT 0, -- attempt log entries ever written
    due         bigint NOT NULL,            -- ready: when it is due; held: when the hold ends
    expires     bigint,                     -- delivered and dead: when the sweep removes it
    event_key   text COLLATE "C",           -- held: the hashed event key
    occ         text,                       -- held: the occurrence (first delivery id of its event)
    lease_owner text,                       -- the queue whose attempt holds it
    lease_until timestamptz,                -- free again after this
    log         jsonb NOT NULL DEFAULT '[]',
    body        bytea NOT NULL
) WITH (
    -- Every delivery is inserted, updated twice (lease, outcome) and
    -- deleted within minutes: vacuum early and at full speed, so that the
    -- claim's index scans do not walk dead entries.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 0
);

-- What the claim reads: each hook's unleased ready deliveries by due time.
CREATE INDEX queue_deliveries_ready ON queue_deliveries (hook, due, id)
    WHERE state = 'ready' AND lease_owner IS NULL;
-- Leases: counted per hook by the claim, freed when they expire.
CREATE INDEX queue_deliveries_leased ON queue_deliveries (lease_until)
    WHERE lease_owner IS NOT NULL;
-- A hook's deliveries: listing, cancel, redeliver all.
CREATE INDEX queue_deliveries_hook ON queue_deliveries (hook, id);
-- The expiry sweep of delivered and dead deliveries.
CREATE INDEX queue_deliveries_expires ON queue_deliveries (expires)
    WHERE expires IS NOT NULL;
-- Dead letters per hook.
CREATE INDEX queue_deliveries_dead ON queue_deliveries (hook)
    WHERE state = 'dead';
-- Holds by the time they end (Settle), and by event key (Confirm).
CREATE INDEX queue_deliveries_held ON queue_deliveries (due, id)
    WHERE state = 'held';
CREATE INDEX queue_deliveries_held_key ON queue_deliveries (event_key, id)
    WHERE state = 'held';

-- Event keys of Hold/Confirm: one row per key, locked by whoever decides
-- about it, so that concurrent Holds and Confirms of one key (on any
-- sidecar) are decided one after the other. mode: 'h' held, 'c' confirmed,
-- 'n' credits (confirmed occurrences no hold matched yet), '' not decided.
-- A row past expires counts as unknown.
CREATE TABLE queue_event_keys (
    key     text COLLATE "C" PRIMARY KEY,
    mode    text NOT NULL DEFAULT '',
    credits integer NOT NULL DEFAULT 0,
    expires bigint NOT NULL
);
CREATE INDEX queue_event_keys_expires ON queue_event_keys (expires);

-- Redeliver-all jobs in progress: the newest delivery id a job covers and
-- the last id it did.
CREATE TABLE queue_jobs (
    hook  text COLLATE "C" PRIMARY KEY,
    upto  text COLLATE "C" NOT NULL,
    after text COLLATE "C" NOT NULL DEFAULT ''
);
