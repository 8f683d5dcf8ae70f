-- qinfra PostgreSQL schema, version 6: one overlay value per host.
--
-- A host_overlay row per entry cost about 200 bytes on disk (tuple header,
-- item pointer, an entry in each of two indexes) for some 50 bytes of
-- data, and the body of each entry, mostly the host's alone, was an items
-- row of its own. Each host's overlay becomes one value in its host_sets
-- row, holding the entries' bodies (pgstore's overlay.go describes the
-- encoding). Bodies only overlays referenced stay in items until
-- PruneHistory collects them.

-- host_sets is each host's base (NULL for none) and overlay (NULL for
-- none); a host with neither has no row.
ALTER TABLE host_sets ALTER COLUMN base_id DROP NOT NULL;
ALTER TABLE host_sets ADD COLUMN overlay bytea;
ALTER TABLE host_sets ADD CONSTRAINT host_sets_base_or_overlay CHECK (base_id IS NOT NULL OR overlay IS NOT NULL);
-- A value over about 2 kB is compressed and kept in the row (MAIN) rather
-- than moved to the TOAST table, which costs a row and an index entry per
-- 2 kB; only one still over 8 kB compressed is moved. base_id, a hash,
-- is neither compressible nor worth moving.
ALTER TABLE host_sets ALTER COLUMN overlay SET STORAGE MAIN;
ALTER TABLE host_sets ALTER COLUMN base_id SET STORAGE PLAIN;

-- uvarint is encoding/binary's unsigned varint of n.
CREATE FUNCTION pg_temp.uvarint(n bigint) RETURNS bytea LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
	out bytea := '';
BEGIN
	WHILE n >= 128 LOOP
		out := out || set_byte('\x00'::bytea, 0, ((n & 127) | 128)::integer);
		n := n >> 7;
	END LOOP;
	RETURN out || set_byte('\x00'::bytea, 0, n::integer);
END
$$;

DO $$
BEGIN
	IF EXISTS (SELECT 1 FROM host_overlay o WHERE o.body_hash IS NOT NULL
		AND NOT EXISTS (SELECT 1 FROM items i WHERE i.body_hash = o.body_hash)) THEN
		RAISE EXCEPTION 'host_overlay names item bodies that are not stored';
	END IF;
END
$$;

-- Each host's entries in (kind, key) byte order after the format byte (1):
-- a tombstone is tag 0, an item tag 1 and its stored body.
CREATE TEMPORARY TABLE migrate_overlays ON COMMIT DROP AS
SELECT o.hkey, '\x01'::bytea || string_agg(
	pg_temp.uvarint(length(convert_to(o.kind, 'UTF8'))) || convert_to(o.kind, 'UTF8') ||
	pg_temp.uvarint(length(o.key)) || o.key ||
	CASE WHEN o.body_hash IS NULL THEN '\x00'::bytea
		ELSE '\x01'::bytea || pg_temp.uvarint(length(i.body)) || i.body END,
	''::bytea ORDER BY o.kind, o.key) AS overlay
FROM host_overlay o LEFT JOIN items i ON i.body_hash = o.body_hash
GROUP BY o.hkey;

UPDATE host_sets hs SET overlay = m.overlay FROM migrate_overlays m WHERE m.hkey = hs.hkey;
INSERT INTO host_sets (hkey, base_id, overlay)
SELECT m.hkey, NULL, m.overlay FROM migrate_overlays m
WHERE NOT EXISTS (SELECT 1 FROM host_sets hs WHERE hs.hkey = m.hkey);

DROP TABLE host_overlay;
DROP FUNCTION pg_temp.uvarint(bigint);
