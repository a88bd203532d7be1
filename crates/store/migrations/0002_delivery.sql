-- trailkeep PostgreSQL schema, version 2: delivery (see crates/store/src/postgres/delivery.rs).
--
-- Delivery reads each tenant's log as its outbox; these tables hold where each destination
-- got to, and which server runs its delivery loop.

-- Named delivery cursors (`alerts/ops-chat`, `sinks/gcl`): per tenant, the next seq to deliver.
-- A save upserts the positions it was given; other tenants' rows keep theirs.
CREATE TABLE delivery_cursors (
    name       text        NOT NULL,
    tenant_id  text        NOT NULL,
    next_seq   bigint      NOT NULL CHECK (next_seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, tenant_id)
);

-- Leases: one server at a time runs the delivery loop of a destination. A holder renews its
-- lease before expires_at; anyone may take an expired one. Times are the database's clock.
CREATE TABLE delivery_leases (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
