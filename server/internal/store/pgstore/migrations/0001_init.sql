-- qinfra PostgreSQL schema, version 1.
--
-- Identifiers and ordering keys that the store contract orders "by byte
-- order" are text COLLATE "C" (byte order of UTF-8) or bytea (memcmp).
-- Values an agent chooses and that may hold any bytes (item keys, spool
-- IDs, command output) are bytea: text refuses NUL and invalid UTF-8.
-- Zero Go times are stored as NULL.

CREATE TABLE hosts (
	-- hkey is the compact key the high-volume tables use instead of id.
	hkey           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
	id             text COLLATE "C" PRIMARY KEY,
	hostname       text NOT NULL,
	labels         jsonb NOT NULL,
	enrolled_at    timestamptz,
	last_seen      timestamptz,
	agent_version  text NOT NULL,
	-- facts is the OSFacts proto; NULL when the host has none.
	facts          bytea,
	cert_serial    text NOT NULL,
	cert_not_after timestamptz,
	revoked        boolean NOT NULL,
	revoked_at     timestamptz
);

CREATE TABLE enrollment_tokens (
	id           text COLLATE "C" PRIMARY KEY,
	hash         bytea NOT NULL UNIQUE,
	description  text NOT NULL,
	labels       jsonb NOT NULL,
	uses_allowed bigint NOT NULL,
	used         bigint NOT NULL,
	expires_at   timestamptz,
	created_at   timestamptz,
	created_by   text NOT NULL
);

CREATE TABLE api_tokens (
	id         text COLLATE "C" PRIMARY KEY,
	hash       bytea NOT NULL UNIQUE,
	name       text NOT NULL,
	role       text NOT NULL,
	created_at timestamptz
);

-- streams holds each host's stream state: one row per host, created with
-- the host. Every message consuming a (host, spool, seq) locks this row
-- FOR UPDATE and updates it in the same transaction that applies it.
CREATE TABLE streams (
	hkey       bigint PRIMARY KEY REFERENCES hosts (hkey) ON DELETE CASCADE,
	-- started is set when the host's first seq is consumed; until then
	-- the stream state is the zero StreamState.
	started    boolean NOT NULL DEFAULT false,
	spool_id   bytea NOT NULL DEFAULT '',
	-- last_seq is the uint64 sequence number's bit pattern; compared in Go.
	last_seq   bigint NOT NULL DEFAULT 0,
	-- acc and item_count are the inventory.Accumulator of the host's items.
	acc        bytea NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000',
	item_count bigint NOT NULL DEFAULT 0,
	needs_full boolean NOT NULL DEFAULT false,
	-- has_items is set once a full inventory has been applied: later
	-- updates record item changes, the first one does not.
	has_items  boolean NOT NULL DEFAULT false,
	updated_at timestamptz
);

-- items holds each distinct item body once: body is the deterministic
-- protobuf encoding of the item without kind and key (the agent's item
-- hash and the body; bboltstore's blob), body_hash its SHA-256, computed
-- by the server, so no agent can make another host's item resolve to a
-- body it chose. Rows are never updated; unreferenced ones are deleted by
-- PruneHistory. No foreign key points here: a key-share lock per
-- referencing row on bodies every host shares would serialize ingest; the
-- items advisory lock protects them instead (see pgstore's doc).
CREATE TABLE items (
	body_hash bytea PRIMARY KEY,
	body      bytea NOT NULL
);

-- host_items is each host's item set: one thin row per item.
CREATE TABLE host_items (
	hkey      bigint NOT NULL,
	kind      text COLLATE "C" NOT NULL,
	key       bytea NOT NULL,
	body_hash bytea NOT NULL,
	PRIMARY KEY (hkey, kind, key)
);
-- For the garbage collection of items.
CREATE INDEX host_items_body_hash ON host_items (body_hash);

-- item_changes is the inventory timeline.
CREATE TABLE item_changes (
	id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	hkey        bigint NOT NULL,
	seq         bigint NOT NULL,
	time        timestamptz,
	kind        text COLLATE "C" NOT NULL,
	key         bytea NOT NULL,
	op          text NOT NULL,
	before_hash bytea,
	after_hash  bytea
);
CREATE INDEX item_changes_host_time ON item_changes (hkey, time, id);
CREATE INDEX item_changes_time ON item_changes (time);
CREATE INDEX item_changes_before_hash ON item_changes (before_hash) WHERE before_hash IS NOT NULL;
CREATE INDEX item_changes_after_hash ON item_changes (after_hash) WHERE after_hash IS NOT NULL;

CREATE TABLE commands (
	id          text COLLATE "C" PRIMARY KEY,
	hkey        bigint NOT NULL REFERENCES hosts (hkey) ON DELETE CASCADE,
	kind        text NOT NULL,
	payload     bytea NOT NULL,
	created_at  timestamptz,
	created_by  text NOT NULL,
	deadline    timestamptz,
	state       text NOT NULL,
	sent_at     timestamptz,
	attempts    bigint NOT NULL,
	finished_at timestamptz,
	exit_code   integer NOT NULL,
	-- output and error are bytea: an agent's output may hold any bytes.
	output      bytea NOT NULL,
	error       bytea NOT NULL
);
CREATE INDEX commands_host ON commands (hkey, created_at, id);
CREATE INDEX commands_unfinished_deadline ON commands (deadline)
	WHERE state IN ('pending', 'sent') AND deadline IS NOT NULL;

CREATE TABLE audit_log (
	seq       bigint PRIMARY KEY,
	time      timestamptz NOT NULL,
	actor     text NOT NULL,
	action    text NOT NULL,
	target    text NOT NULL,
	detail    text NOT NULL,
	prev_hash bytea NOT NULL,
	hash      bytea NOT NULL
);
CREATE INDEX audit_log_time ON audit_log (time);

-- audit_head is the chain's head: the last appended entry's seq and hash.
-- AppendAudit locks it FOR UPDATE, which serializes appends across
-- replicas, and it outlives PruneAudit, so the chain goes on from the
-- pruned entries.
CREATE TABLE audit_head (
	one  boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq  bigint NOT NULL,
	hash bytea NOT NULL
);
INSERT INTO audit_head (seq, hash) VALUES (0, '');
