-- The hook store (package hooks). Ids are Ocean's ids (aid): the "C"
-- collation orders them by bytes, which is their creation order.

CREATE TABLE hooks (
    id             text COLLATE "C" PRIMARY KEY,
    user_id        text COLLATE "C" NOT NULL,
    name           text NOT NULL,
    url            text NOT NULL,
    secret         text NOT NULL,
    "on"           text[] NOT NULL,
    active         boolean NOT NULL,
    latest_sent_at timestamptz,
    latest_status  integer,
    native_id      text COLLATE "C",
    failing_since  timestamptz,
    failures       integer NOT NULL DEFAULT 0,
    succeeded_at   timestamptz,
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, native_id)
);

CREATE INDEX hooks_user_id ON hooks (user_id, id);

COMMENT ON TABLE hooks IS 'Users'' webhooks, as Ocean models them (oceanhooks).';
COMMENT ON COLUMN hooks."on" IS 'The event types the hook receives.';
COMMENT ON COLUMN hooks.native_id IS 'Ocean''s id of the hook this one was imported from; NULL when created through oceanhooks.';
COMMENT ON COLUMN hooks.failing_since IS 'When the hook''s current run of failed delivery attempts began (auto-disable); NULL when its latest attempt succeeded.';
COMMENT ON COLUMN hooks.failures IS 'The failed attempts of that run.';
COMMENT ON COLUMN hooks.succeeded_at IS 'When the latest successful delivery attempt, through any sidecar, began: it ends every run of failed attempts that began at or before it.';
COMMENT ON COLUMN hooks.disabled_at IS 'When auto-disable deactivated the hook; NULL if it did not or the hook is active again.';

-- One row per hook in Ocean that was imported, kept after the hook is
-- deleted, so that the same hook in Ocean is never imported twice.
CREATE TABLE hook_imports (
    user_id     text COLLATE "C" NOT NULL,
    native_id   text COLLATE "C" NOT NULL,
    hook_id     text COLLATE "C" NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, native_id)
);

-- The users whose hooks in Ocean were all taken over: the takeover never
-- asks Ocean about them again.
CREATE TABLE hook_takeovers (
    user_id       text COLLATE "C" PRIMARY KEY,
    taken_over_at timestamptz NOT NULL
);
