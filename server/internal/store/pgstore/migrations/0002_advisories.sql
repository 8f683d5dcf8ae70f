-- qinfra PostgreSQL schema, version 2: the vulnerability database and
-- finding mutes.

CREATE TABLE advisories (
	id         text COLLATE "C" PRIMARY KEY,
	modified   timestamptz NOT NULL,
	withdrawn  boolean NOT NULL,
	ecosystems text[] NOT NULL,
	packages   text[] NOT NULL,
	-- record is the OSV record's JSON as imported.
	record     bytea NOT NULL,
	-- revision is advisory_state.revision when this version was put.
	revision   bigint NOT NULL
);

CREATE INDEX advisories_revision ON advisories (revision, id);

-- advisory_state is one row: the revision counter, bumped by every put
-- that changes something, and when that happened.
CREATE TABLE advisory_state (
	one        boolean PRIMARY KEY DEFAULT true CHECK (one),
	revision   bigint NOT NULL,
	updated_at timestamptz
);

INSERT INTO advisory_state (one, revision) VALUES (true, 0);

CREATE TABLE mutes (
	id            text COLLATE "C" PRIMARY KEY,
	host_id       text NOT NULL,
	vulnerability text NOT NULL,
	package       text NOT NULL,
	justification text NOT NULL,
	until         timestamptz,
	created_by    text NOT NULL,
	created_at    timestamptz
);
