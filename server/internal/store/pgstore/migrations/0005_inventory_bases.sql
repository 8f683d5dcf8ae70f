-- qinfra PostgreSQL schema, version 5: content-addressed item sets.
--
-- Hosts built from one image hold almost the same items. Instead of one
-- row per host and item (host_items), an item set is stored once as a
-- base, and each host keeps its base's ID and an overlay: the entries
-- where it differs from the base (see pgstore's bases.go).

-- inv_bases is each stored base: base_id is the SHA-256 of its rows in
-- (kind, key) byte order, each encoded as the kind's length (4 bytes, big
-- endian), the kind, the key's length, the key and the body hash; refs the
-- number of host_sets rows naming it (a base is deleted, with its items,
-- by the transaction that drops its last reference, so 0 is never
-- committed); n its item count.
CREATE TABLE inv_bases (
	base_id bytea PRIMARY KEY,
	refs    bigint NOT NULL CHECK (refs >= 0),
	n       integer NOT NULL
);
-- Candidate bases for a full inventory: the most referenced.
CREATE INDEX inv_bases_refs ON inv_bases (refs);

-- inv_base_items is the items of each base. Rows are only inserted with
-- their base and deleted with it.
CREATE TABLE inv_base_items (
	base_id   bytea NOT NULL,
	kind      text COLLATE "C" NOT NULL,
	key       bytea NOT NULL,
	body_hash bytea NOT NULL,
	PRIMARY KEY (base_id, kind, key)
);
-- For the garbage collection of items.
CREATE INDEX inv_base_items_body_hash ON inv_base_items (body_hash);

-- host_sets is each host's base; a host without one (no items, or all in
-- its overlay) has no row.
CREATE TABLE host_sets (
	hkey    bigint PRIMARY KEY,
	base_id bytea NOT NULL
);

-- host_overlay is each host's differences from its base: an item the host
-- holds with another body or the base lacks, or (body_hash NULL) a
-- tombstone for an item of the base the host lacks.
CREATE TABLE host_overlay (
	hkey      bigint NOT NULL,
	kind      text COLLATE "C" NOT NULL,
	key       bytea NOT NULL,
	body_hash bytea,
	PRIMARY KEY (hkey, kind, key)
);
CREATE INDEX host_overlay_body_hash ON host_overlay (body_hash) WHERE body_hash IS NOT NULL;

-- Each host's set becomes a base, hosts with identical sets sharing one,
-- with an empty overlay.
CREATE TEMPORARY TABLE migrate_sets ON COMMIT DROP AS
SELECT hkey,
	sha256(string_agg(int4send(octet_length(kind)) || convert_to(kind, 'UTF8') ||
		int4send(length(key)) || key || body_hash, ''::bytea ORDER BY kind, key)) AS base_id,
	count(*)::integer AS n
FROM host_items GROUP BY hkey;

INSERT INTO host_sets (hkey, base_id) SELECT hkey, base_id FROM migrate_sets;

INSERT INTO inv_bases (base_id, refs, n)
SELECT base_id, count(*), min(n) FROM migrate_sets GROUP BY base_id;

INSERT INTO inv_base_items (base_id, kind, key, body_hash)
SELECT m.base_id, h.kind, h.key, h.body_hash
FROM (SELECT DISTINCT ON (base_id) base_id, hkey FROM migrate_sets ORDER BY base_id, hkey) m
JOIN host_items h ON h.hkey = m.hkey;

DROP TABLE host_items;
