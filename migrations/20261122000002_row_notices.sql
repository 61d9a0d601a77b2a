-- Row-level change notices for the two tables that grow: trunk_ips and
-- customer_dedicated_ips. The edge then re-reads only the rows a change names, instead of the
-- whole ACL (a 100k-entry full reload takes about 200 ms; a delta takes about 1 ms).
--
-- The triggers stay per statement: they read the statement's transition tables and send one
-- notification naming the changed rows' ids, `trunk_ips:<id>,<id>,...`. A statement that
-- changes more than 100 rows sends the bare table name instead (`trunk_ips`), which edges
-- answer with a full reload, as they answer every notification of migration 1. A payload
-- stays far below PostgreSQL's 8000-byte limit (100 UUIDs are 3.7 kB). PostgreSQL delivers
-- notifications at COMMIT, in commit order, and never for a rolled-back change.
--
-- customers and trunk_groups keep the statement trigger of migration 1 (payload: the table's
-- name); edges re-read those small tables and reload trunk IPs only when a trunk group's
-- customer changed.

CREATE OR REPLACE FUNCTION accounts.warp_edge_notify_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed  BIGINT;
    ids      TEXT;
BEGIN
    -- Only the branch taken is planned, so each trigger names only the transition tables it
    -- has (INSERT: warp_new; DELETE: warp_old; UPDATE: both, for an update of the id itself).
    IF TG_OP = 'INSERT' THEN
        SELECT count(*), string_agg(id::text, ',') INTO changed, ids
        FROM (SELECT id FROM warp_new LIMIT 101) AS rows;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT count(*), string_agg(id::text, ',') INTO changed, ids
        FROM (SELECT id FROM warp_old LIMIT 101) AS rows;
    ELSE
        SELECT count(*), string_agg(id::text, ',') INTO changed, ids
        FROM (SELECT id FROM warp_new UNION SELECT id FROM warp_old LIMIT 101) AS rows;
    END IF;
    IF changed = 0 THEN
        RETURN NULL;
    END IF;
    PERFORM pg_notify(
        coalesce(nullif(current_setting('warp_edge.notify_channel', true), ''), 'warp_edge_acl'),
        CASE WHEN changed > 100 THEN TG_TABLE_NAME ELSE TG_TABLE_NAME || ':' || ids END);
    RETURN NULL;
END
$$;

DO $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['trunk_ips', 'customer_dedicated_ips']
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS warp_edge_notify ON accounts.%I', t);
        EXECUTE format('DROP TRIGGER IF EXISTS warp_edge_notify_insert ON accounts.%I', t);
        EXECUTE format(
            'CREATE TRIGGER warp_edge_notify_insert AFTER INSERT ON accounts.%I '
            'REFERENCING NEW TABLE AS warp_new '
            'FOR EACH STATEMENT EXECUTE FUNCTION accounts.warp_edge_notify_rows()', t);
        EXECUTE format('DROP TRIGGER IF EXISTS warp_edge_notify_update ON accounts.%I', t);
        EXECUTE format(
            'CREATE TRIGGER warp_edge_notify_update AFTER UPDATE ON accounts.%I '
            'REFERENCING OLD TABLE AS warp_old NEW TABLE AS warp_new '
            'FOR EACH STATEMENT EXECUTE FUNCTION accounts.warp_edge_notify_rows()', t);
        EXECUTE format('DROP TRIGGER IF EXISTS warp_edge_notify_delete ON accounts.%I', t);
        EXECUTE format(
            'CREATE TRIGGER warp_edge_notify_delete AFTER DELETE ON accounts.%I '
            'REFERENCING OLD TABLE AS warp_old '
            'FOR EACH STATEMENT EXECUTE FUNCTION accounts.warp_edge_notify_rows()', t);
        -- TRUNCATE has no transition tables: the bare table name, so a full reload.
        EXECUTE format('DROP TRIGGER IF EXISTS warp_edge_notify_truncate ON accounts.%I', t);
        EXECUTE format(
            'CREATE TRIGGER warp_edge_notify_truncate AFTER TRUNCATE ON accounts.%I '
            'FOR EACH STATEMENT EXECUTE FUNCTION accounts.warp_edge_notify()', t);
    END LOOP;
END
$$;
