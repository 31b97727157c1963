-- Once a site has been audited, its trust and status are supervision's: an update from anywhere
-- else (e.g. reloading the registry file, which upserts trust 1.0 / status active) leaves them as
-- the audits made them. Supervision marks its own writes with the transaction-local setting
-- vreserve.trust_writer = 'supervision'. Sites never audited keep taking the registry's values.
CREATE FUNCTION supervision_keep_audited_trust() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.trust IS DISTINCT FROM OLD.trust OR NEW.status IS DISTINCT FROM OLD.status)
       AND coalesce(current_setting('vreserve.trust_writer', true), '') <> 'supervision'
       AND EXISTS (SELECT 1 FROM audits WHERE site_id = OLD.site_id) THEN
        NEW.trust := OLD.trust;
        NEW.status := OLD.status;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER sites_keep_audited_trust BEFORE UPDATE OF trust, status ON sites
    FOR EACH ROW EXECUTE FUNCTION supervision_keep_audited_trust();
