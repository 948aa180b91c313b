-- A CI/CD service: pipelines run on branches; runs go queued -> running -> succeeded/failed or
-- cancelled, and can be retried; successful runs deploy to environments, some of which accept
-- only protected branches or need an approval by someone other than the run's author.
CREATE TABLE repositories (
  repo_id         INTEGER PRIMARY KEY,
  name            TEXT NOT NULL UNIQUE,
  default_branch  TEXT NOT NULL,
  visibility      TEXT NOT NULL CHECK (visibility IN ('public', 'private'))
);
CREATE TABLE branches (
  branch_id  INTEGER PRIMARY KEY,
  repo_id    INTEGER NOT NULL REFERENCES repositories(repo_id),
  name       TEXT NOT NULL,
  head_sha   TEXT NOT NULL,
  protected  INTEGER NOT NULL CHECK (protected IN (0, 1)),
  UNIQUE (repo_id, name)
);
CREATE TABLE pipelines (
  pipeline_id  INTEGER PRIMARY KEY,
  repo_id      INTEGER NOT NULL REFERENCES repositories(repo_id),
  name         TEXT NOT NULL,
  UNIQUE (repo_id, name)
);
CREATE TABLE runs (
  run_id        INTEGER PRIMARY KEY,
  pipeline_id   INTEGER NOT NULL REFERENCES pipelines(pipeline_id),
  branch_id     INTEGER NOT NULL REFERENCES branches(branch_id),
  commit_sha    TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  triggered_by  TEXT NOT NULL,
  attempt       INTEGER NOT NULL DEFAULT 1,
  retry_of      INTEGER REFERENCES runs(run_id),
  created_at    TEXT NOT NULL
);
CREATE TABLE artifacts (
  artifact_id  INTEGER PRIMARY KEY,
  run_id       INTEGER NOT NULL REFERENCES runs(run_id),
  name         TEXT NOT NULL,
  size_kb      INTEGER NOT NULL
);
CREATE TABLE environments (
  env_id                 INTEGER PRIMARY KEY,
  repo_id                INTEGER NOT NULL REFERENCES repositories(repo_id),
  name                   TEXT NOT NULL,
  requires_approval      INTEGER NOT NULL CHECK (requires_approval IN (0, 1)),
  protected_branches_only INTEGER NOT NULL CHECK (protected_branches_only IN (0, 1)),
  UNIQUE (repo_id, name)
);
CREATE TABLE deployments (
  deployment_id  INTEGER PRIMARY KEY,
  env_id         INTEGER NOT NULL REFERENCES environments(env_id),
  run_id         INTEGER NOT NULL REFERENCES runs(run_id),
  status         TEXT NOT NULL CHECK (status IN ('pending_approval', 'deployed', 'rejected', 'rolled_back', 'superseded')),
  approved_by    TEXT,
  created_at     TEXT NOT NULL
);
CREATE INDEX runs_pipeline ON runs(pipeline_id, status);
