-- The platform's `accounts` schema as far as the SIP edge reads it: customers, trunk groups,
-- trunk IPs and dedicated ingress IPs, two lookup functions, and triggers that NOTIFY the
-- edges on every change. Every statement is guarded (IF NOT EXISTS, OR REPLACE), so applying
-- this to a platform database that already has some of these objects leaves them as they are.
--
-- The notification channel is `warp_edge_acl` unless the database sets another one:
--   ALTER DATABASE platform SET warp_edge.notify_channel = 'my_channel';
-- Triggers are per statement, so a bulk load of 100k rows sends one notification, and
-- PostgreSQL delivers it at COMMIT (never for a rolled-back change).

CREATE SCHEMA IF NOT EXISTS accounts;

CREATE TABLE IF NOT EXISTS accounts.customers (
    ban         TEXT PRIMARY KEY CHECK (length(btrim(ban)) > 0),
    name        TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'suspended', 'closed')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS accounts.trunk_groups (
    id                    BIGSERIAL PRIMARY KEY,
    customer_ban          TEXT NOT NULL
                          REFERENCES accounts.customers (ban) ON UPDATE CASCADE ON DELETE CASCADE,
    name                  TEXT NOT NULL,
    auth_type             TEXT NOT NULL DEFAULT 'IP_ACL'
                          CHECK (auth_type IN ('IP_ACL', 'DIGEST', 'BOTH')),
    max_cps               INTEGER CHECK (max_cps IS NULL OR max_cps >= 0),
    max_concurrent_calls  INTEGER CHECK (max_concurrent_calls IS NULL OR max_concurrent_calls >= 0),
    route_name            TEXT,
    enabled               BOOLEAN NOT NULL DEFAULT true,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_ban, name)
);

-- `ip` is INET: a host (`192.0.2.10`) or a range (`192.0.2.0/28`). Host bits below the mask
-- are ignored, as Kamailio masks its subnets.
CREATE TABLE IF NOT EXISTS accounts.trunk_ips (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    trunk_group_id  BIGINT NOT NULL
                    REFERENCES accounts.trunk_groups (id) ON DELETE CASCADE,
    ip              INET NOT NULL,
    port            INTEGER NOT NULL DEFAULT 0 CHECK (port BETWEEN 0 AND 65535),
    proto           TEXT NOT NULL DEFAULT 'any' CHECK (proto IN ('any', 'udp', 'tcp', 'tls')),
    description     TEXT NOT NULL DEFAULT '',
    enabled         BOOLEAN NOT NULL DEFAULT true,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (trunk_group_id, ip, port, proto)
);

CREATE INDEX IF NOT EXISTS trunk_ips_ip_idx ON accounts.trunk_ips USING gist (ip inet_ops);

CREATE TABLE IF NOT EXISTS accounts.customer_dedicated_ips (
    id             BIGSERIAL PRIMARY KEY,
    customer_ban   TEXT NOT NULL
                   REFERENCES accounts.customers (ban) ON UPDATE CASCADE ON DELETE CASCADE,
    ip             INET NOT NULL UNIQUE
                   CHECK (masklen(ip) = CASE family(ip) WHEN 4 THEN 32 ELSE 128 END),
    resource_name  TEXT NOT NULL DEFAULT '',
    enabled        BOOLEAN NOT NULL DEFAULT true,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The customer a source IP belongs to: the enabled trunk IP with the longest prefix
-- containing it, on an enabled trunk group (ties: the lower id). The customer's status is
-- returned, not filtered: a suspended customer is still recognised, then refused.
CREATE OR REPLACE FUNCTION accounts.get_customer_by_source_ip(source INET)
RETURNS TABLE (
    customer_ban     TEXT,
    customer_status  TEXT,
    trunk_group_id   BIGINT,
    trunk_ip_id      UUID,
    matched          INET
)
LANGUAGE sql STABLE AS $$
    SELECT tg.customer_ban, c.status, tg.id, ti.id, ti.ip
    FROM accounts.trunk_ips ti
    JOIN accounts.trunk_groups tg ON tg.id = ti.trunk_group_id
    JOIN accounts.customers c ON c.ban = tg.customer_ban
    WHERE ti.enabled AND tg.enabled AND ti.ip >>= source
    ORDER BY masklen(ti.ip) DESC, ti.id
    LIMIT 1
$$;

-- The customer a dedicated ingress IP belongs to (enabled rows only).
CREATE OR REPLACE FUNCTION accounts.get_customer_by_dest_ip(dest INET)
RETURNS TABLE (
    customer_ban     TEXT,
    customer_status  TEXT,
    dedicated_ip_id  BIGINT,
    resource_name    TEXT
)
LANGUAGE sql STABLE AS $$
    SELECT d.customer_ban, c.status, d.id, d.resource_name
    FROM accounts.customer_dedicated_ips d
    JOIN accounts.customers c ON c.ban = d.customer_ban
    WHERE d.enabled AND d.ip = dest
$$;

-- NOTIFY the edges: the payload is the table's name (edges reload everything anyway).
CREATE OR REPLACE FUNCTION accounts.warp_edge_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        coalesce(nullif(current_setting('warp_edge.notify_channel', true), ''), 'warp_edge_acl'),
        TG_TABLE_NAME);
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION accounts.touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['customers', 'trunk_groups', 'trunk_ips', 'customer_dedicated_ips']
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS warp_edge_notify ON accounts.%I', t);
        EXECUTE format(
            'CREATE TRIGGER warp_edge_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE '
            'ON accounts.%I FOR EACH STATEMENT EXECUTE FUNCTION accounts.warp_edge_notify()', t);
        EXECUTE format('DROP TRIGGER IF EXISTS touch_updated_at ON accounts.%I', t);
        EXECUTE format(
            'CREATE TRIGGER touch_updated_at BEFORE UPDATE ON accounts.%I '
            'FOR EACH ROW EXECUTE FUNCTION accounts.touch_updated_at()', t);
    END LOOP;
END
$$;
