-- qinfra PostgreSQL schema, version 3: golden baselines and drift.

-- baselines holds every immutable version; doc is the baseline.Baseline's
-- JSON.
CREATE TABLE baselines (
	name    text COLLATE "C" NOT NULL,
	version integer NOT NULL,
	doc     bytea NOT NULL,
	PRIMARY KEY (name, version)
);

-- drift is one row per drift: opened, maybe updated, maybe resolved.
-- identity is baseline.Deviation.Identity (NUL-separated, hence bytea),
-- fingerprint store.DriftFingerprint, doc the store.Drift's JSON.
CREATE TABLE drift (
	id             bigserial PRIMARY KEY,
	host_id        text COLLATE "C" NOT NULL,
	identity       bytea NOT NULL,
	fingerprint    bytea NOT NULL,
	baseline       text COLLATE "C" NOT NULL,
	drift_type     text COLLATE "C" NOT NULL,
	severity       text COLLATE "C" NOT NULL,
	opened_at      timestamptz NOT NULL,
	resolved_at    timestamptz,
	accepted_until timestamptz,
	doc            bytea NOT NULL
);

CREATE UNIQUE INDEX drift_open ON drift (host_id, identity) WHERE resolved_at IS NULL;
CREATE INDEX drift_by_host ON drift (host_id, opened_at, id);
CREATE INDEX drift_accepted ON drift (accepted_until) WHERE accepted_until IS NOT NULL;
