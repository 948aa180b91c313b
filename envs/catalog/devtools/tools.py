"""CI/CD tools. Rules enforced here: a run is triggered on a branch of the pipeline's repository
at the branch head; only queued or running runs cancel; only failed or cancelled runs retry (as a
new attempt); only succeeded runs deploy, to an environment of the same repository; protected
environments take protected branches only; approvals come from someone other than the run's
author; a new deployment supersedes the environment's current one; rollbacks restore the previous one."""
import hashlib

from envfactory.envs import ToolError


def _run(ctx, run_id):
    run = ctx.one("SELECT r.*, p.name AS pipeline_name, p.repo_id, b.name AS branch_name, b.protected AS branch_protected FROM runs r "
                  "JOIN pipelines p USING (pipeline_id) JOIN branches b USING (branch_id) WHERE r.run_id = ?", (run_id,))
    if run is None:
        raise ToolError(f"run {run_id} does not exist")
    run["artifacts"] = ctx.all("SELECT artifact_id, name, size_kb FROM artifacts WHERE run_id = ? ORDER BY artifact_id", (run_id,))
    return run


def _deployment(ctx, deployment_id):
    d = ctx.one("SELECT d.*, e.name AS environment_name, e.repo_id FROM deployments d JOIN environments e USING (env_id) "
                "WHERE d.deployment_id = ?", (deployment_id,))
    if d is None:
        raise ToolError(f"deployment {deployment_id} does not exist")
    return d


def find_repository(ctx, name):
    repo = ctx.one("SELECT * FROM repositories WHERE lower(name) = lower(?)", (name.strip(),))
    if repo is None:
        raise ToolError(f"no repository is named {name!r}")
    repo["pipelines"] = ctx.all("SELECT pipeline_id, name FROM pipelines WHERE repo_id = ? ORDER BY name", (repo["repo_id"],))
    repo["environments"] = ctx.all("SELECT env_id, name, requires_approval, protected_branches_only FROM environments WHERE repo_id = ? ORDER BY env_id",
                                   (repo["repo_id"],))
    return repo


def list_branches(ctx, repo_id):
    ctx.get("repositories", repo_id, "repository")
    return {"repo_id": repo_id, "branches": ctx.all("SELECT branch_id, name, head_sha, protected FROM branches WHERE repo_id = ? ORDER BY name", (repo_id,))}


def list_runs(ctx, pipeline_id=None, branch_id=None, status=None, limit=10, offset=0):
    where, params = [], []
    if pipeline_id is not None:
        ctx.get("pipelines", pipeline_id, "pipeline")
        where.append("pipeline_id = ?")
        params.append(pipeline_id)
    if branch_id is not None:
        where.append("branch_id = ?")
        params.append(branch_id)
    if status:
        where.append("status = ?")
        params.append(status)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    total = ctx.scalar(f"SELECT COUNT(*) FROM runs{clause}", params)
    rows = ctx.all(f"SELECT run_id, pipeline_id, branch_id, commit_sha, status, triggered_by, attempt, created_at FROM runs{clause} "
                   "ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
    return {"total": total, "runs": rows}


def get_run(ctx, run_id):
    return _run(ctx, run_id)


def trigger_run(ctx, pipeline_id, branch_id, triggered_by):
    pipeline = ctx.get("pipelines", pipeline_id, "pipeline")
    branch = ctx.get("branches", branch_id, "branch")
    if branch["repo_id"] != pipeline["repo_id"]:
        raise ToolError(f"branch {branch_id} belongs to another repository than pipeline {pipeline_id}")
    if ctx.scalar("SELECT 1 FROM runs WHERE pipeline_id = ? AND branch_id = ? AND commit_sha = ? AND status IN ('queued', 'running')",
                  (pipeline_id, branch_id, branch["head_sha"])):
        raise ToolError(f"pipeline {pipeline_id} already has a run in progress for {branch['name']} at {branch['head_sha']}")
    run_id = ctx.insert("runs", {"pipeline_id": pipeline_id, "branch_id": branch_id, "commit_sha": branch["head_sha"], "status": "queued",
                                 "triggered_by": triggered_by, "attempt": 1, "retry_of": None, "created_at": ctx.now()})
    return _run(ctx, run_id)


def cancel_run(ctx, run_id):
    run = _run(ctx, run_id)
    if run["status"] not in ("queued", "running"):
        raise ToolError(f"run {run_id} is {run['status']}; only queued or running runs can be cancelled")
    ctx.update("runs", run_id, {"status": "cancelled"})
    return _run(ctx, run_id)


def retry_run(ctx, run_id, triggered_by):
    run = _run(ctx, run_id)
    if run["status"] not in ("failed", "cancelled"):
        raise ToolError(f"run {run_id} is {run['status']}; only failed or cancelled runs can be retried")
    if ctx.scalar("SELECT 1 FROM runs WHERE retry_of = ?", (run_id,)):
        raise ToolError(f"run {run_id} was already retried")
    new_id = ctx.insert("runs", {"pipeline_id": run["pipeline_id"], "branch_id": run["branch_id"], "commit_sha": run["commit_sha"],
                                 "status": "queued", "triggered_by": triggered_by, "attempt": run["attempt"] + 1, "retry_of": run_id,
                                 "created_at": ctx.now()})
    return _run(ctx, new_id)


def deploy_run(ctx, run_id, env_id):
    run = _run(ctx, run_id)
    env = ctx.get("environments", env_id, "environment")
    if run["status"] != "succeeded":
        raise ToolError(f"run {run_id} is {run['status']}; only succeeded runs can be deployed")
    if env["repo_id"] != run["repo_id"]:
        raise ToolError(f"environment {env_id} belongs to another repository than run {run_id}")
    if env["protected_branches_only"] and not run["branch_protected"]:
        raise ToolError(f"environment {env['name']} accepts protected branches only; run {run_id} is from {run['branch_name']}")
    if ctx.scalar("SELECT 1 FROM deployments WHERE env_id = ? AND status = 'pending_approval'", (env_id,)):
        raise ToolError(f"environment {env['name']} already has a deployment waiting for approval")
    status = "pending_approval" if env["requires_approval"] else "deployed"
    if status == "deployed":
        ctx.execute("UPDATE deployments SET status = 'superseded' WHERE env_id = ? AND status = 'deployed'", (env_id,))
    dep_id = ctx.insert("deployments", {"env_id": env_id, "run_id": run_id, "status": status, "approved_by": None, "created_at": ctx.now()})
    return _deployment(ctx, dep_id)


def approve_deployment(ctx, deployment_id, approver):
    dep = _deployment(ctx, deployment_id)
    if dep["status"] != "pending_approval":
        raise ToolError(f"deployment {deployment_id} is {dep['status']}; only pending deployments can be approved")
    author = ctx.scalar("SELECT triggered_by FROM runs WHERE run_id = ?", (dep["run_id"],))
    if approver.strip().lower() == author:
        raise ToolError(f"{approver} triggered run {dep['run_id']} and cannot approve its deployment")
    ctx.execute("UPDATE deployments SET status = 'superseded' WHERE env_id = ? AND status = 'deployed'", (dep["env_id"],))
    ctx.update("deployments", deployment_id, {"status": "deployed", "approved_by": approver.strip().lower()})
    return _deployment(ctx, deployment_id)


def rollback_deployment(ctx, deployment_id):
    dep = _deployment(ctx, deployment_id)
    if dep["status"] != "deployed":
        raise ToolError(f"deployment {deployment_id} is {dep['status']}; only the live deployment can be rolled back")
    previous = ctx.one("SELECT deployment_id FROM deployments WHERE env_id = ? AND status = 'superseded' AND deployment_id < ? "
                       "ORDER BY deployment_id DESC LIMIT 1", (dep["env_id"], deployment_id))
    if previous is None:
        raise ToolError(f"environment {dep['environment_name']} has no earlier deployment to roll back to")
    ctx.update("deployments", deployment_id, {"status": "rolled_back"})
    ctx.update("deployments", previous["deployment_id"], {"status": "deployed"})
    return {"rolled_back": _deployment(ctx, deployment_id), "live": _deployment(ctx, previous["deployment_id"])}
