-- A project and task tracker: tasks move todo -> in_progress -> done (or blocked), cannot finish
-- before the tasks they depend on, and carry assignees, comments and logged time.
CREATE TABLE members (
  member_id   INTEGER PRIMARY KEY,
  name        TEXT NOT NULL,
  email       TEXT NOT NULL UNIQUE,
  role        TEXT NOT NULL CHECK (role IN ('engineer', 'designer', 'manager', 'analyst'))
);
CREATE TABLE projects (
  project_id  INTEGER PRIMARY KEY,
  name        TEXT NOT NULL UNIQUE,
  owner_id    INTEGER NOT NULL REFERENCES members(member_id),
  status      TEXT NOT NULL CHECK (status IN ('active', 'archived'))
);
CREATE TABLE tasks (
  task_id         INTEGER PRIMARY KEY,
  project_id      INTEGER NOT NULL REFERENCES projects(project_id),
  title           TEXT NOT NULL,
  assignee_id     INTEGER REFERENCES members(member_id),
  priority        TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
  status          TEXT NOT NULL CHECK (status IN ('todo', 'in_progress', 'blocked', 'done')),
  due_date        TEXT,
  created_on      TEXT NOT NULL
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
  body        TEXT NOT NULL,
  posted_on   TEXT NOT NULL
);
CREATE TABLE time_entries (
  entry_id    INTEGER PRIMARY KEY,
  task_id     INTEGER NOT NULL REFERENCES tasks(task_id),
  member_id   INTEGER NOT NULL REFERENCES members(member_id),
  hours       REAL NOT NULL CHECK (hours > 0 AND hours <= 12),
  logged_on   TEXT NOT NULL
);
CREATE INDEX tasks_project ON tasks(project_id, status);
