"""Deterministic seed data for the devtools environment: python seed_gen.py > seed.json"""
import datetime as dt
import hashlib
import json
import random

r = random.Random(79)
CLOCK = dt.datetime(2026, 11, 2, 15, 0)
people = ["alice", "bjorn", "chen", "dara", "emeka", "fatima", "goran", "hiro"]
repo_names = ["payments-service", "web-frontend", "mobile-app", "data-pipeline", "auth-gateway", "docs-site"]
repos = [{"repo_id": i + 1, "name": n, "default_branch": "main", "visibility": "public" if n == "docs-site" else "private"} for i, n in enumerate(repo_names)]
sha = lambda s: hashlib.sha1(s.encode()).hexdigest()[:12]
branches = []
for repo in repos:
    names = ["main", "release/2.4"] + [f"feature/{w}" for w in r.sample(["login-retry", "dark-mode", "cache-v2", "rate-limit", "i18n", "refactor-db", "flaky-test"], 3)]
    for n in names:
        branches.append({"branch_id": len(branches) + 1, "repo_id": repo["repo_id"], "name": n, "head_sha": sha(repo["name"] + n),
                         "protected": 1 if n in ("main",) or n.startswith("release/") else 0})
pipelines = []
for repo in repos:
    for n in (["build-and-test", "deploy"] if repo["name"] != "docs-site" else ["publish"]):
        pipelines.append({"pipeline_id": len(pipelines) + 1, "repo_id": repo["repo_id"], "name": n})
environments = []
for repo in repos:
    for n, approval, protected in (("staging", 0, 0), ("production", 1, 1)):
        environments.append({"env_id": len(environments) + 1, "repo_id": repo["repo_id"], "name": n,
                             "requires_approval": approval, "protected_branches_only": protected})
runs, artifacts, deployments = [], [], []
for i in range(120):
    p = r.choice(pipelines)
    b = r.choice([x for x in branches if x["repo_id"] == p["repo_id"]])
    created = CLOCK - dt.timedelta(minutes=r.randint(5, 60 * 24 * 20))
    recent = (CLOCK - created).total_seconds() < 3600 * 3
    status = r.choice(["queued", "running"]) if recent else r.choice(["succeeded", "succeeded", "succeeded", "failed", "cancelled"])
    run = {"run_id": i + 1, "pipeline_id": p["pipeline_id"], "branch_id": b["branch_id"], "commit_sha": sha(f"{i}{b['name']}"),
           "status": status, "triggered_by": r.choice(people), "attempt": 1, "retry_of": None,
           "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ")}
    runs.append(run)
    if status == "succeeded":
        for a in r.sample(["app.tar.gz", "coverage.xml", "test-report.html", "sbom.json"], 2):
            artifacts.append({"artifact_id": len(artifacts) + 1, "run_id": run["run_id"], "name": a, "size_kb": r.randint(20, 90000)})
        if r.random() < 0.3:
            env = r.choice([e for e in environments if e["repo_id"] == p["repo_id"] and (b["protected"] or not e["protected_branches_only"])])
            deployments.append({"deployment_id": len(deployments) + 1, "env_id": env["env_id"], "run_id": run["run_id"],
                                "status": "deployed" if not env["requires_approval"] else r.choice(["deployed", "pending_approval"]),
                                "approved_by": r.choice([x for x in people if x != run["triggered_by"]]) if env["requires_approval"] else None,
                                "created_at": run["created_at"]})
for d in deployments:
    if d["status"] == "pending_approval":
        d["approved_by"] = None
live = {}
for d in sorted(deployments, key=lambda d: d["deployment_id"]):  # one live deployment per environment
    if d["status"] == "deployed":
        if d["env_id"] in live:
            live[d["env_id"]]["status"] = "superseded"
        live[d["env_id"]] = d
pending = set()
for d in deployments:  # at most one deployment waits for approval per environment
    if d["status"] == "pending_approval":
        if d["env_id"] in pending:
            d["status"], d["approved_by"] = "rejected", None
        pending.add(d["env_id"])
print(json.dumps({"repositories": repos, "branches": branches, "pipelines": pipelines, "environments": environments, "runs": runs,
                  "artifacts": artifacts, "deployments": deployments}, indent=1))
