-- trailkeep PostgreSQL schema, version 1 (see crates/store/src/postgres/mod.rs for the model).
--
-- Applied by `PostgresStore::open` and `trailkeep migrate`, inside one transaction holding a
-- transaction-level advisory lock, so several processes starting at once apply it once.

-- One row per tenant log. The row lock (SELECT … FOR UPDATE) serialises appends to a tenant
-- across processes: next_seq is the tree size and the next seq to assign.
CREATE TABLE tenants (
    tenant_id    text PRIMARY KEY,
    next_seq     bigint NOT NULL DEFAULT 0,
    event_count  bigint NOT NULL DEFAULT 0,
    first_ts     bigint,
    first_digits smallint,
    last_ts      bigint,
    last_digits  smallint
);

-- Accepted events, append-only. payload/salt are NULL once purged (payload_commitment then
-- keeps the leaf recomputable); leaf_hash never changes.
CREATE TABLE events (
    tenant_id          text     NOT NULL,
    seq                bigint   NOT NULL,
    event_id           uuid     NOT NULL UNIQUE,
    event_type         text     NOT NULL,
    actor              text     NOT NULL,
    ts_nanos           bigint   NOT NULL,
    ts_digits          smallint NOT NULL,
    ts_assigned        boolean  NOT NULL,
    received_nanos     bigint   NOT NULL,
    source_ip          text,
    session            text,
    approval_id        text,
    payload            bytea,
    salt               bytea,
    payload_commitment bytea,
    leaf_hash          bytea    NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);

CREATE INDEX events_by_time    ON events (tenant_id, ts_nanos, event_id);
CREATE INDEX events_by_type    ON events (tenant_id, event_type, ts_nanos, event_id);
CREATE INDEX events_by_actor   ON events (tenant_id, actor, ts_nanos, event_id);
CREATE INDEX events_by_session ON events (tenant_id, session, ts_nanos, event_id)
    WHERE session IS NOT NULL;
CREATE INDEX events_all_by_time ON events (ts_nanos, event_id);

-- Merkle tree hashes in trailkeep_tlog's stored-hash layout (every node once, linear index).
CREATE TABLE tree_hashes (
    tenant_id text   NOT NULL,
    idx       bigint NOT NULL,
    hash      bytea  NOT NULL,
    PRIMARY KEY (tenant_id, idx)
);

-- At most one signed checkpoint per (tenant, tree size).
CREATE TABLE checkpoints (
    tenant_id text   NOT NULL,
    size      bigint NOT NULL,
    root      bytea  NOT NULL,
    note      text   NOT NULL,
    PRIMARY KEY (tenant_id, size)
);

-- API keys: only the SHA-256 of each secret is stored.
CREATE TABLE api_keys (
    id            text PRIMARY KEY,
    role          text    NOT NULL,
    tenant_id     text,
    created_at    text    NOT NULL,
    expires_at    text,
    expires_nanos bigint,
    revoked       boolean NOT NULL DEFAULT false,
    secret_hash   text    NOT NULL UNIQUE
);

-- The public key (C2SP vkey) that signs each log's checkpoints. Only the public half: the
-- secret stays with the servers. A process whose key differs from the recorded one refuses to
-- start, so processes sharing a database never sign with two different keys.
CREATE TABLE log_keys (
    log_name text PRIMARY KEY,
    vkey     text NOT NULL
);
