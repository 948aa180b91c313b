"""Project and task tracker tools. Rules enforced here: tasks go todo -> in_progress -> done, any
open task may be blocked and unblocked, done is final; a task cannot be done before the tasks it
depends on; dependencies stay inside one project and never form a cycle; archived projects take
no new tasks and only archive when every task is done; logged time is 0.25 to 12 hours."""
from envfactory.envs import ToolError

TRANSITIONS = {"todo": {"in_progress", "blocked"}, "in_progress": {"done", "blocked", "todo"},
               "blocked": {"todo", "in_progress"}, "done": set()}


def _task(ctx, task_id):
    task = ctx.get("tasks", task_id, "task")
    deps = ctx.all("SELECT t.task_id, t.title, t.status FROM task_dependencies d JOIN tasks t ON t.task_id = d.depends_on_id "
                   "WHERE d.task_id = ? ORDER BY t.task_id", (task_id,))
    assignee = ctx.scalar("SELECT name FROM members WHERE member_id = ?", (task["assignee_id"],)) if task["assignee_id"] else None
    return {**task, "assignee_name": assignee, "depends_on": deps,
            "logged_hours": ctx.scalar("SELECT COALESCE(SUM(hours), 0) FROM time_entries WHERE task_id = ?", (task_id,))}


def find_member(ctx, email):
    row = ctx.one("SELECT * FROM members WHERE lower(email) = lower(?)", (email.strip(),))
    if row is None:
        raise ToolError(f"no team member has the email {email!r}")
    return row


def list_projects(ctx, status=None):
    sql = ("SELECT p.project_id, p.name, p.status, p.owner_id, "
           "(SELECT COUNT(*) FROM tasks t WHERE t.project_id = p.project_id AND t.status != 'done') AS open_tasks FROM projects p")
    rows = ctx.all(sql + (" WHERE p.status = ?" if status else "") + " ORDER BY p.name", (status,) if status else ())
    return {"projects": rows}


def search_tasks(ctx, project_id=None, assignee_id=None, status=None, priority=None, query=None, limit=20, offset=0):
    where, params = [], []
    for column, value in (("project_id", project_id), ("assignee_id", assignee_id), ("status", status), ("priority", priority)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query:
        where.append("title LIKE ?")
        params.append(f"%{query}%")
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f"SELECT COUNT(*) FROM tasks{clause}", params)
    rows = ctx.all(f"SELECT task_id, project_id, title, assignee_id, priority, status, due_date FROM tasks{clause} "
                   "ORDER BY CASE priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END, task_id "
                   "LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "tasks": rows}


def get_task(ctx, task_id):
    return _task(ctx, task_id)


def create_task(ctx, project_id, title, priority="medium", due_date=None, assignee_id=None):
    project = ctx.get("projects", project_id, "project")
    if project["status"] != "active":
        raise ToolError(f"project {project_id} is archived and takes no new tasks")
    if due_date is not None and due_date < ctx.today():
        raise ToolError(f"due date {due_date} is in the past (today is {ctx.today()})")
    if assignee_id is not None:
        ctx.get("members", assignee_id, "member")
    if ctx.scalar("SELECT 1 FROM tasks WHERE project_id = ? AND lower(title) = lower(?)", (project_id, title.strip())):
        raise ToolError(f"project {project_id} already has a task titled {title.strip()!r}")
    task_id = ctx.insert("tasks", {"project_id": project_id, "title": title.strip(), "assignee_id": assignee_id, "priority": priority,
                                   "status": "todo", "due_date": due_date, "created_on": ctx.today()})
    return _task(ctx, task_id)


def update_task_status(ctx, task_id, status):
    task = ctx.get("tasks", task_id, "task")
    if status == task["status"]:
        raise ToolError(f"task {task_id} is already {status}")
    if status not in TRANSITIONS[task["status"]]:
        raise ToolError(f"task {task_id} cannot go from {task['status']} to {status}")
    if status == "done":
        open_deps = ctx.all("SELECT t.task_id FROM task_dependencies d JOIN tasks t ON t.task_id = d.depends_on_id "
                            "WHERE d.task_id = ? AND t.status != 'done'", (task_id,))
        if open_deps:
            raise ToolError(f"task {task_id} depends on unfinished task(s) {', '.join(str(r['task_id']) for r in open_deps)}")
    ctx.update("tasks", task_id, {"status": status})
    return _task(ctx, task_id)


def assign_task(ctx, task_id, assignee_id):
    task = ctx.get("tasks", task_id, "task")
    ctx.get("members", assignee_id, "member")
    if task["status"] == "done":
        raise ToolError(f"task {task_id} is done and cannot be reassigned")
    ctx.update("tasks", task_id, {"assignee_id": assignee_id})
    return _task(ctx, task_id)


def add_dependency(ctx, task_id, depends_on_id):
    task, other = ctx.get("tasks", task_id, "task"), ctx.get("tasks", depends_on_id, "task")
    if task_id == depends_on_id:
        raise ToolError("a task cannot depend on itself")
    if task["project_id"] != other["project_id"]:
        raise ToolError(f"tasks {task_id} and {depends_on_id} belong to different projects")
    reachable = ctx.scalar("WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT d.depends_on_id FROM task_dependencies d JOIN up ON d.task_id = up.id) "
                           "SELECT 1 FROM up WHERE id = ?", (depends_on_id, task_id))
    if reachable:
        raise ToolError(f"task {depends_on_id} already depends on task {task_id}; this would make a cycle")
    if ctx.scalar("SELECT 1 FROM task_dependencies WHERE task_id = ? AND depends_on_id = ?", (task_id, depends_on_id)):
        raise ToolError(f"task {task_id} already depends on task {depends_on_id}")
    ctx.execute("INSERT INTO task_dependencies (task_id, depends_on_id) VALUES (?, ?)", (task_id, depends_on_id))
    return _task(ctx, task_id)


def add_comment(ctx, task_id, author_id, body):
    ctx.get("tasks", task_id, "task")
    ctx.get("members", author_id, "member")
    comment_id = ctx.insert("comments", {"task_id": task_id, "author_id": author_id, "body": body.strip(), "posted_on": ctx.today()})
    return ctx.get("comments", comment_id, "comment")


def log_time(ctx, task_id, member_id, hours):
    task = ctx.get("tasks", task_id, "task")
    ctx.get("members", member_id, "member")
    if task["status"] == "todo":
        raise ToolError(f"task {task_id} has not been started; move it to in_progress before logging time")
    entry_id = ctx.insert("time_entries", {"task_id": task_id, "member_id": member_id, "hours": hours, "logged_on": ctx.today()})
    return {**ctx.get("time_entries", entry_id, "time entry"), "task_total_hours": _task(ctx, task_id)["logged_hours"]}


def archive_project(ctx, project_id):
    project = ctx.get("projects", project_id, "project")
    if project["status"] == "archived":
        raise ToolError(f"project {project_id} is already archived")
    open_tasks = ctx.scalar("SELECT COUNT(*) FROM tasks WHERE project_id = ? AND status != 'done'", (project_id,))
    if open_tasks:
        raise ToolError(f"project {project_id} still has {open_tasks} unfinished task(s)")
    ctx.update("projects", project_id, {"status": "archived"})
    return ctx.get("projects", project_id, "project")
