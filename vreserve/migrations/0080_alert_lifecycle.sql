-- Alert lifecycle (issue 16): opened -> acknowledged (by whom, with a note) -> resolved (by a person,
-- or automatically when the condition clears), never duplicated while open, every action recorded.
--
-- The writers of alerts (stream worker: stale, low_stock, jump / unexplained changes; supervision:
-- audit discrepancies) keep their own INSERT ... ON CONFLICT (alert_id) DO NOTHING statements. The
-- lifecycle is enforced here, for every writer at once:
--   * open_key: one open alert per (kind, site, material, grid cell) unless the writer sets its own
--     key; a second alert for the same open key is not inserted, the open one counts a repeat;
--   * a resolution without a person (resolved_by NULL: the worker's "condition cleared") is
--     recorded as resolved by 'system' with the reason 'condition cleared';
--   * alert_actions: opened / acknowledged / resolved, who, when, with the note.

ALTER TABLE alerts ADD COLUMN open_key text;
ALTER TABLE alerts ADD COLUMN acknowledged_at timestamptz;
ALTER TABLE alerts ADD COLUMN acknowledged_by text;
ALTER TABLE alerts ADD COLUMN acknowledge_note text;
ALTER TABLE alerts ADD COLUMN resolved_by text;
ALTER TABLE alerts ADD COLUMN resolve_note text;
ALTER TABLE alerts ADD COLUMN repeats integer NOT NULL DEFAULT 0;
ALTER TABLE alerts ADD COLUMN last_seen_at timestamptz;

CREATE OR REPLACE FUNCTION alert_open_key(kind text, site_id text, material_id text, grid_cell text)
RETURNS text LANGUAGE sql IMMUTABLE AS
$$ SELECT kind || '|' || coalesce(site_id, '') || '|' || coalesce(material_id, '') || '|' || coalesce(grid_cell, '') $$;

-- Existing rows: every alert gets its key; of several open alerts with one key the newest stays
-- open and the older ones are resolved as superseded (so the unique index below can exist).
UPDATE alerts SET open_key = CASE WHEN kind = 'audit_discrepancy' THEN alert_id
                                  ELSE alert_open_key(kind, site_id, material_id, grid_cell) END;
UPDATE alerts a SET resolved_at = now(), resolved_by = 'system', resolve_note = 'superseded by a newer open alert of the same kind and scope'
WHERE a.resolved_at IS NULL
  AND EXISTS (SELECT 1 FROM alerts b WHERE b.open_key = a.open_key AND b.resolved_at IS NULL
              AND (b.at, b.alert_id) > (a.at, a.alert_id));
ALTER TABLE alerts ALTER COLUMN open_key SET NOT NULL;
CREATE UNIQUE INDEX alerts_one_open_per_key ON alerts (open_key) WHERE resolved_at IS NULL;

CREATE TABLE alert_actions (
    action_id  bigserial PRIMARY KEY,
    alert_id   text NOT NULL REFERENCES alerts (alert_id) ON DELETE CASCADE,
    action     text NOT NULL CHECK (action IN ('opened', 'acknowledged', 'resolved', 'repeated')),
    actor      text NOT NULL,
    note       text NOT NULL DEFAULT '',
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_actions_alert ON alert_actions (alert_id, at);

-- BEFORE INSERT: fill the open key; when an alert with the same key is open (another alert id),
-- count a repeat on it and skip this row. The advisory lock serialises writers of one key, so two
-- transactions cannot both open it (the unique index is the backstop).
CREATE OR REPLACE FUNCTION alerts_before_insert() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    open_id text;
BEGIN
    IF NEW.open_key IS NULL THEN
        NEW.open_key := alert_open_key(NEW.kind, NEW.site_id, NEW.material_id, NEW.grid_cell);
    END IF;
    IF NEW.resolved_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    PERFORM pg_advisory_xact_lock(hashtext('vreserve.alert_open_key'), hashtext(NEW.open_key));
    SELECT alert_id INTO open_id FROM alerts WHERE open_key = NEW.open_key AND resolved_at IS NULL;
    IF open_id IS NULL OR open_id = NEW.alert_id THEN
        RETURN NEW;   -- a new condition, or a replay of the open alert (ON CONFLICT handles it)
    END IF;
    UPDATE alerts SET repeats = repeats + 1, last_seen_at = GREATEST(coalesce(last_seen_at, NEW.at), NEW.at),
                      details = details || jsonb_build_object('last_repeat', jsonb_build_object(
                          'alert_id', NEW.alert_id, 'at', NEW.at, 'message', NEW.message))
    WHERE alert_id = open_id;
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_before_insert BEFORE INSERT ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_before_insert();

-- BEFORE UPDATE: a resolution nobody signed is the system's (the condition cleared).
CREATE OR REPLACE FUNCTION alerts_before_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL AND NEW.resolved_by IS NULL THEN
        NEW.resolved_by := 'system';
        NEW.resolve_note := coalesce(NEW.resolve_note, 'condition cleared');
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER alerts_before_update BEFORE UPDATE ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_before_update();

-- AFTER: the action log.
CREATE OR REPLACE FUNCTION alerts_log_action() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO alert_actions (alert_id, action, actor, note, at)
        VALUES (NEW.alert_id, 'opened', 'system', NEW.message, now());
        IF NEW.resolved_at IS NOT NULL THEN
            INSERT INTO alert_actions (alert_id, action, actor, note, at)
            VALUES (NEW.alert_id, 'resolved', coalesce(NEW.resolved_by, 'system'), coalesce(NEW.resolve_note, ''), now());
        END IF;
        RETURN NULL;
    END IF;
    IF OLD.acknowledged_at IS NULL AND NEW.acknowledged_at IS NOT NULL THEN
        INSERT INTO alert_actions (alert_id, action, actor, note)
        VALUES (NEW.alert_id, 'acknowledged', NEW.acknowledged_by, coalesce(NEW.acknowledge_note, ''));
    END IF;
    IF OLD.resolved_at IS NULL AND NEW.resolved_at IS NOT NULL THEN
        INSERT INTO alert_actions (alert_id, action, actor, note)
        VALUES (NEW.alert_id, 'resolved', NEW.resolved_by, coalesce(NEW.resolve_note, ''));
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_log_action AFTER INSERT OR UPDATE OF acknowledged_at, resolved_at ON alerts
    FOR EACH ROW EXECUTE FUNCTION alerts_log_action();
