-- A project and task tracker. Workspaces hold members and projects; tasks move through a workflow
-- (todo -> in_progress -> in_review -> done, with blocked and cancelled on the side), cannot finish
-- before the tasks they depend on, and carry assignees, comments and logged time.
CREATE TABLE workspaces (
  workspace_id  INTEGER PRIMARY KEY,
  name          TEXT NOT NULL UNIQUE,
  slug          TEXT NOT NULL UNIQUE CHECK (slug = lower(slug) AND slug NOT LIKE '% %')
);

CREATE TABLE members (
  member_id     INTEGER PRIMARY KEY,
  workspace_id  INTEGER NOT NULL REFERENCES workspaces(workspace_id),
  name          TEXT NOT NULL,
  email         TEXT NOT NULL UNIQUE CHECK (email LIKE '%_@_%._%'),
  role          TEXT NOT NULL CHECK (role IN ('admin', 'member', 'guest')),
  active        INTEGER NOT NULL DEFAULT 1 CHECK (active IN (0, 1))
);

CREATE TABLE projects (
  project_id    INTEGER PRIMARY KEY,
  workspace_id  INTEGER NOT NULL REFERENCES workspaces(workspace_id),
  name          TEXT NOT NULL,
  owner_id      INTEGER NOT NULL REFERENCES members(member_id),
  status        TEXT NOT NULL CHECK (status IN ('active', 'archived')),
  start_date    TEXT NOT NULL,
  target_date   TEXT NOT NULL,
  archived_on   TEXT,
  UNIQUE (workspace_id, name),
  CHECK (target_date >= start_date),
  CHECK ((status = 'archived') = (archived_on IS NOT NULL))
);

CREATE TABLE tasks (
  task_id         INTEGER PRIMARY KEY,
  project_id      INTEGER NOT NULL REFERENCES projects(project_id),
  title           TEXT NOT NULL CHECK (length(title) BETWEEN 3 AND 120),
  description     TEXT NOT NULL DEFAULT '',
  assignee_id     INTEGER REFERENCES members(member_id),
  priority        TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
  status          TEXT NOT NULL CHECK (status IN ('todo', 'in_progress', 'in_review', 'blocked', 'done', 'cancelled')),
  blocked_reason  TEXT,
  estimate_hours  REAL CHECK (estimate_hours IS NULL OR (estimate_hours > 0 AND estimate_hours <= 200)),
  due_date        TEXT,
  created_on      TEXT NOT NULL,
  completed_on    TEXT,
  -- work in progress, in review or done always has someone responsible for it
  CHECK (status NOT IN ('in_progress', 'in_review', 'done') OR assignee_id IS NOT NULL),
  CHECK ((status = 'blocked') = (blocked_reason IS NOT NULL)),
  CHECK ((status = 'done') = (completed_on IS NOT NULL)),
  CHECK (completed_on IS NULL OR completed_on >= created_on)
);

CREATE TABLE task_dependencies (
  task_id        INTEGER NOT NULL REFERENCES tasks(task_id),
  depends_on_id  INTEGER NOT NULL REFERENCES tasks(task_id),
  PRIMARY KEY (task_id, depends_on_id),
  CHECK (task_id != depends_on_id)
);

CREATE TABLE comments (
  comment_id  INTEGER PRIMARY KEY,
  task_id     INTEGER NOT NULL REFERENCES tasks(task_id),
  author_id   INTEGER NOT NULL REFERENCES members(member_id),
  body        TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
  posted_at   TEXT NOT NULL
);

CREATE TABLE time_entries (
  entry_id    INTEGER PRIMARY KEY,
  task_id     INTEGER NOT NULL REFERENCES tasks(task_id),
  member_id   INTEGER NOT NULL REFERENCES members(member_id),
  hours       REAL NOT NULL CHECK (hours >= 0.25 AND hours <= 12),
  work_date   TEXT NOT NULL,
  note        TEXT NOT NULL DEFAULT ''
);

CREATE INDEX members_workspace ON members(workspace_id);
CREATE INDEX projects_workspace ON projects(workspace_id, status);
CREATE INDEX tasks_project ON tasks(project_id, status);
CREATE INDEX tasks_assignee ON tasks(assignee_id, status);
CREATE INDEX task_dependencies_upstream ON task_dependencies(depends_on_id);
CREATE INDEX comments_task ON comments(task_id);
CREATE INDEX time_entries_task ON time_entries(task_id);
CREATE INDEX time_entries_member_day ON time_entries(member_id, work_date);
