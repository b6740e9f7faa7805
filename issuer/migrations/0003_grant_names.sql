-- Grants applied from a grants file carry the operator's name for them, unique among the
-- grants in force (a changed grant is revoked and re-created under the same name).
ALTER TABLE grants ADD COLUMN name TEXT;
CREATE UNIQUE INDEX grants_active_name ON grants (name) WHERE name IS NOT NULL AND revoked_at IS NULL;
