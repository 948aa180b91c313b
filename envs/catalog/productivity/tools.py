"""Project and task tracker tools.

Rules enforced here (several are also backed by CHECK constraints in schema.sql):
- workflow: todo -> in_progress -> in_review -> done; any open task may be blocked (with a reason)
  and unblocked; todo, in_progress and blocked tasks may be cancelled; done tasks may be reopened to
  in_progress; cancelled is final. Starting work needs an assignee.
- a task is done only after every task it depends on is done; a task that open tasks depend on
  cannot be cancelled; dependencies stay inside one project and never form a cycle.
- assignees and time loggers are active, non-guest members of the project's workspace; comment
  authors are active members of it (guests included).
- time is logged on tasks that are not cancelled, in quarter hours, on a work date not in the future nor before
  the task was created, at most 12 hours per member per day.
- archived projects are read-only; a project archives only when every task is done or cancelled.
"""
from envfactory.envs import ToolError

TRANSITIONS = {
    "todo": {"in_progress", "blocked", "cancelled"},
    "in_progress": {"in_review", "blocked", "todo", "cancelled"},
    "in_review": {"done", "in_progress"},
    "blocked": {"todo", "in_progress", "cancelled"},
    "done": {"in_progress"},
    "cancelled": set(),
}
OPEN = ("todo", "in_progress", "in_review", "blocked")
DAILY_HOURS_CAP = 12
TASK_COLUMNS = "t.task_id, t.project_id, t.title, t.assignee_id, t.priority, t.status, t.estimate_hours, t.due_date"
PRIORITY_ORDER = "CASE t.priority WHEN 'urgent' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 2 ELSE 3 END"


# ---------------------------------------------------------------- helpers

def _project(ctx, project_id, writable=False):
    project = ctx.get("projects", project_id, "project")
    if writable and project["status"] == "archived":
        raise ToolError(f"project {project_id} ({project['name']}) is archived; its tasks can no longer be changed")
    return project


def _writable_task(ctx, task_id):
    task = ctx.get("tasks", task_id, "task")
    _project(ctx, task["project_id"], writable=True)
    return task


def _workspace_member(ctx, member_id, workspace_id, purpose, allow_guest=False):
    member = ctx.get("members", member_id, "member")
    if member["workspace_id"] != workspace_id:
        raise ToolError(f"member {member_id} ({member['name']}) is not in workspace {workspace_id}")
    if not member["active"]:
        raise ToolError(f"member {member_id} ({member['name']}) is deactivated and cannot {purpose}")
    if member["role"] == "guest" and not allow_guest:
        raise ToolError(f"member {member_id} ({member['name']}) is a guest; guests cannot {purpose}")
    return member


def _workspace_of_task(ctx, task):
    return ctx.scalar("SELECT workspace_id FROM projects WHERE project_id = ?", (task["project_id"],))


def _task(ctx, task_id, links=False):
    """The task record task tools return; with ``links``, also the tasks it depends on and the tasks waiting on it."""
    task = ctx.get("tasks", task_id, "task")
    project = ctx.one("SELECT name, workspace_id FROM projects WHERE project_id = ?", (task["project_id"],))
    assignee = ctx.scalar("SELECT name FROM members WHERE member_id = ?", (task["assignee_id"],)) if task["assignee_id"] else None
    extra = {}
    if links:
        extra["depends_on"] = ctx.all("SELECT t.task_id, t.title, t.status FROM task_dependencies d JOIN tasks t ON t.task_id = d.depends_on_id "
                                      "WHERE d.task_id = ? ORDER BY t.task_id", (task_id,))
        extra["blocking"] = ctx.all("SELECT t.task_id, t.title, t.status FROM task_dependencies d JOIN tasks t ON t.task_id = d.task_id "
                                    "WHERE d.depends_on_id = ? ORDER BY t.task_id", (task_id,))
    open_deps = ctx.scalar("SELECT COUNT(*) FROM task_dependencies d JOIN tasks t ON t.task_id = d.depends_on_id "
                           "WHERE d.task_id = ? AND t.status != 'done'", (task_id,))
    hours = ctx.scalar("SELECT COALESCE(SUM(hours), 0) FROM time_entries WHERE task_id = ?", (task_id,))
    comments = ctx.scalar("SELECT COUNT(*) FROM comments WHERE task_id = ?", (task_id,))
    return {**task, "project_name": project["name"], "workspace_id": project["workspace_id"], "assignee_name": assignee,
            "unfinished_dependencies": open_deps, "logged_hours": float(hours), "comment_count": comments, **extra}


def _projects(ctx, where, params):
    clause = f" WHERE {where}" if where else ""
    rows = ctx.all("SELECT p.project_id, p.workspace_id, p.name, p.owner_id, p.status, p.start_date, p.target_date, p.archived_on, "
                   "(SELECT COUNT(*) FROM tasks t WHERE t.project_id = p.project_id AND t.status IN ('todo','in_progress','in_review','blocked')) AS open_tasks, "
                   "(SELECT COUNT(*) FROM tasks t WHERE t.project_id = p.project_id AND t.status = 'done') AS done_tasks, "
                   "(SELECT COALESCE(SUM(e.hours), 0) FROM time_entries e JOIN tasks t USING (task_id) WHERE t.project_id = p.project_id) AS logged_hours "
                   f"FROM projects p{clause} ORDER BY p.name, p.project_id", params)
    for r in rows:
        r["logged_hours"] = float(r["logged_hours"])
    return rows


def _check_due_date(ctx, project, due_date):
    if due_date is None:
        return
    if due_date < ctx.today():
        raise ToolError(f"due date {due_date} is in the past (today is {ctx.today()})")
    if due_date > project["target_date"]:
        raise ToolError(f"due date {due_date} is after project {project['project_id']}'s target date {project['target_date']}")


def _check_title(ctx, project_id, title, task_id=None):
    clash = ctx.scalar("SELECT task_id FROM tasks WHERE project_id = ? AND lower(title) = lower(?) AND task_id != ?",
                       (project_id, title, task_id or 0))
    if clash:
        raise ToolError(f"project {project_id} already has a task titled {title!r} (task {clash})")


# ---------------------------------------------------------------- reads

def find_member(ctx, email):
    row = ctx.one("SELECT m.*, w.name AS workspace_name FROM members m JOIN workspaces w USING (workspace_id) "
                  "WHERE lower(m.email) = lower(?)", (email.strip(),))
    if row is None:
        raise ToolError(f"no member has the email {email.strip()!r}")
    return {**row, "active": bool(row["active"])}


def list_projects(ctx, workspace_id=None, status=None, include_archived=False):
    where, params = [], []
    if status is None and not include_archived:
        status = "active"
    if workspace_id is not None:
        ctx.get("workspaces", workspace_id, "workspace")
        where.append("p.workspace_id = ?")
        params.append(workspace_id)
    if status:
        where.append("p.status = ?")
        params.append(status)
    rows = _projects(ctx, " AND ".join(where), params)
    return {"total": len(rows), "projects": rows}


def search_tasks(ctx, project_id=None, assignee_id=None, status=None, priority=None, query=None, due_before=None,
                 include_closed=False, limit=20, offset=0):
    where, params = [], []
    if status is None and not include_closed:
        where.append("t.status IN ('todo','in_progress','in_review','blocked')")
    if project_id is not None:
        ctx.get("projects", project_id, "project")
    if assignee_id is not None:
        ctx.get("members", assignee_id, "member")
    for column, value in (("t.project_id", project_id), ("t.assignee_id", assignee_id), ("t.status", status),
                          ("t.priority", priority)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query:
        where.append("(t.title LIKE ? OR t.description LIKE ?)")
        params += [f"%{query.strip()}%"] * 2
    if due_before:
        where.append("t.due_date IS NOT NULL AND t.due_date < ?")
        params.append(due_before)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f"SELECT COUNT(*) FROM tasks t{clause}", params)
    rows = ctx.all(f"SELECT {TASK_COLUMNS} FROM tasks t{clause} ORDER BY {PRIORITY_ORDER}, t.due_date IS NULL, t.due_date, t.task_id "
                   "LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "tasks": rows}


def get_task(ctx, task_id, include_comments=True):
    task = _task(ctx, task_id, links=True)
    if include_comments:
        task["comments"] = ctx.all("SELECT c.comment_id, c.author_id, m.name AS author_name, c.body, c.posted_at FROM comments c "
                                   "JOIN members m ON m.member_id = c.author_id WHERE c.task_id = ? ORDER BY c.posted_at, c.comment_id",
                                   (task_id,))
    return task


# ---------------------------------------------------------------- writes

def create_task(ctx, project_id, title, description="", priority="medium", due_date=None, estimate_hours=None, assignee_id=None):
    project = _project(ctx, project_id, writable=True)
    title = title.strip()
    if assignee_id is not None:
        _workspace_member(ctx, assignee_id, project["workspace_id"], "be assigned tasks")
    _check_due_date(ctx, project, due_date)
    _check_title(ctx, project_id, title)
    task_id = ctx.insert("tasks", {"project_id": project_id, "title": title, "description": description.strip(),
                                   "assignee_id": assignee_id, "priority": priority, "status": "todo", "blocked_reason": None,
                                   "estimate_hours": estimate_hours, "due_date": due_date, "created_on": ctx.today(),
                                   "completed_on": None})
    return _task(ctx, task_id)


def update_task(ctx, task_id, title=None, description=None, priority=None, due_date=None, estimate_hours=None):
    task = _writable_task(ctx, task_id)
    if task["status"] in ("done", "cancelled"):
        raise ToolError(f"task {task_id} is {task['status']} and cannot be edited")
    changes = {}
    if title is not None:
        changes["title"] = title.strip()
        _check_title(ctx, task["project_id"], changes["title"], task_id)
    if description is not None:
        changes["description"] = description.strip()
    if priority is not None:
        changes["priority"] = priority
    if due_date is not None:
        _check_due_date(ctx, _project(ctx, task["project_id"]), due_date)
        changes["due_date"] = due_date
    if estimate_hours is not None:
        changes["estimate_hours"] = estimate_hours
    if not changes:
        raise ToolError("give at least one field to change: title, description, priority, due_date or estimate_hours")
    ctx.update("tasks", task_id, changes)
    return _task(ctx, task_id)


def assign_task(ctx, task_id, assignee_id):
    task = _writable_task(ctx, task_id)
    if task["status"] in ("done", "cancelled"):
        raise ToolError(f"task {task_id} is {task['status']} and cannot be reassigned")
    member = _workspace_member(ctx, assignee_id, _workspace_of_task(ctx, task), "be assigned tasks")
    if task["assignee_id"] == assignee_id:
        raise ToolError(f"task {task_id} is already assigned to member {assignee_id} ({member['name']})")
    ctx.update("tasks", task_id, {"assignee_id": assignee_id})
    return _task(ctx, task_id)


def update_task_status(ctx, task_id, status, reason=None):
    task = _writable_task(ctx, task_id)
    current = task["status"]
    if status == current:
        raise ToolError(f"task {task_id} is already {status}")
    if status not in TRANSITIONS[current]:
        allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing (cancelled is final)"
        raise ToolError(f"task {task_id} cannot go from {current} to {status}; from {current} it can go to {allowed}")
    if status in ("in_progress", "in_review") and task["assignee_id"] is None:
        raise ToolError(f"task {task_id} has no assignee; assign it before moving it to {status}")
    if status == "blocked" and not (reason or "").strip():
        raise ToolError(f"say what blocks task {task_id}: a reason is required to move it to blocked")
    if status == "done":
        open_deps = ctx.all("SELECT t.task_id FROM task_dependencies d JOIN tasks t ON t.task_id = d.depends_on_id "
                            "WHERE d.task_id = ? AND t.status != 'done' ORDER BY t.task_id", (task_id,))
        if open_deps:
            raise ToolError(f"task {task_id} depends on unfinished task(s) {', '.join(str(r['task_id']) for r in open_deps)}; "
                            "finish them first")
    if status == "cancelled":
        dependents = ctx.all("SELECT t.task_id FROM task_dependencies d JOIN tasks t ON t.task_id = d.task_id "
                             "WHERE d.depends_on_id = ? AND t.status IN ('todo','in_progress','in_review','blocked') ORDER BY t.task_id",
                             (task_id,))
        if dependents:
            raise ToolError(f"task {task_id} cannot be cancelled: open task(s) {', '.join(str(r['task_id']) for r in dependents)} "
                            "depend on it")
    ctx.update("tasks", task_id, {"status": status,
                                  "blocked_reason": reason.strip() if status == "blocked" else None,
                                  "completed_on": ctx.today() if status == "done" else None})
    return _task(ctx, task_id)


def add_dependency(ctx, task_id, depends_on_id):
    task = _writable_task(ctx, task_id)
    other = ctx.get("tasks", depends_on_id, "task")
    if task_id == depends_on_id:
        raise ToolError(f"task {task_id} cannot depend on itself")
    if task["project_id"] != other["project_id"]:
        raise ToolError(f"tasks {task_id} and {depends_on_id} belong to different projects "
                        f"({task['project_id']} and {other['project_id']})")
    if task["status"] in ("done", "cancelled"):
        raise ToolError(f"task {task_id} is {task['status']}; dependencies can only be added to open tasks")
    if other["status"] == "cancelled":
        raise ToolError(f"task {depends_on_id} is cancelled and cannot be depended on")
    if ctx.scalar("SELECT 1 FROM task_dependencies WHERE task_id = ? AND depends_on_id = ?", (task_id, depends_on_id)):
        raise ToolError(f"task {task_id} already depends on task {depends_on_id}")
    cycle = ctx.scalar("WITH RECURSIVE up(id) AS (SELECT ? UNION SELECT d.depends_on_id FROM task_dependencies d JOIN up ON d.task_id = up.id) "
                       "SELECT 1 FROM up WHERE id = ?", (depends_on_id, task_id))
    if cycle:
        raise ToolError(f"task {depends_on_id} already depends (directly or through other tasks) on task {task_id}; "
                        "this dependency would make a cycle")
    ctx.execute("INSERT INTO task_dependencies (task_id, depends_on_id) VALUES (?, ?)", (task_id, depends_on_id))
    return _task(ctx, task_id, links=True)


def add_comment(ctx, task_id, author_id, body):
    task = _writable_task(ctx, task_id)
    _workspace_member(ctx, author_id, _workspace_of_task(ctx, task), "comment", allow_guest=True)
    body = body.strip()
    if not body:
        raise ToolError("a comment needs some text")
    comment_id = ctx.insert("comments", {"task_id": task_id, "author_id": author_id, "body": body, "posted_at": ctx.now()})
    return ctx.get("comments", comment_id, "comment")


def log_time(ctx, task_id, member_id, hours, work_date=None, note=""):
    task = _writable_task(ctx, task_id)
    _workspace_member(ctx, member_id, _workspace_of_task(ctx, task), "log time")
    if task["status"] == "cancelled":
        raise ToolError(f"task {task_id} is cancelled; time cannot be logged on it")
    work_date = work_date or ctx.today()
    if work_date > ctx.today():
        raise ToolError(f"work date {work_date} is in the future (today is {ctx.today()})")
    if work_date < task["created_on"]:
        raise ToolError(f"work date {work_date} is before task {task_id} was created ({task['created_on']})")
    already = ctx.scalar("SELECT COALESCE(SUM(hours), 0) FROM time_entries WHERE member_id = ? AND work_date = ?", (member_id, work_date))
    if already + hours > DAILY_HOURS_CAP:
        raise ToolError(f"member {member_id} already logged {already:g} h on {work_date}; "
                        f"adding {hours:g} h would exceed {DAILY_HOURS_CAP} h in one day")
    entry_id = ctx.insert("time_entries", {"task_id": task_id, "member_id": member_id, "hours": hours, "work_date": work_date,
                                           "note": (note or "").strip()})
    entry = ctx.get("time_entries", entry_id, "time entry")
    total = ctx.scalar("SELECT SUM(hours) FROM time_entries WHERE task_id = ?", (task_id,))
    return {**entry, "task_status": task["status"], "task_logged_hours": float(total),
            "member_hours_that_day": float(already + hours)}


def archive_project(ctx, project_id):
    project = _project(ctx, project_id)
    if project["status"] == "archived":
        raise ToolError(f"project {project_id} ({project['name']}) is already archived (since {project['archived_on']})")
    open_tasks = [r["task_id"] for r in ctx.all("SELECT task_id FROM tasks WHERE project_id = ? AND status IN "
                                                "('todo','in_progress','in_review','blocked') ORDER BY task_id", (project_id,))]
    if open_tasks:
        shown = ", ".join(map(str, open_tasks[:10])) + (", ..." if len(open_tasks) > 10 else "")
        raise ToolError(f"project {project_id} still has {len(open_tasks)} open task(s) ({shown}); "
                        "finish or cancel them before archiving")
    ctx.update("projects", project_id, {"status": "archived", "archived_on": ctx.today()})
    return _projects(ctx, "p.project_id = ?", [project_id])[0]
