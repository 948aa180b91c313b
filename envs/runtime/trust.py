"""Which packages may run their tool code in this process: bundled ones, and ones whose
verification record matches their content (model-written code only with the user's opt-in)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from envfactory.envs.runtime.packages import CATALOG_DIR

VERIFIED_FILE = "verified.json"


def package_digest(package_dir: Path) -> str:
    """Content hash of a package (every file but the verification record and caches)."""
    h = hashlib.sha256()
    for path in sorted(p for p in package_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(package_dir).as_posix()
        if rel == VERIFIED_FILE or "__pycache__" in rel:
            continue
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def is_trusted(package_dir: Path) -> bool:
    """Bundled packages, and packages whose verification record matches their content."""
    package_dir = package_dir.resolve()
    if CATALOG_DIR in package_dir.parents:
        return True
    record = package_dir / VERIFIED_FILE
    if not record.is_file():
        return False
    try:
        verified = json.loads(record.read_text())
    except (json.JSONDecodeError, OSError):
        return False
    if verified.get("model_written") and os.environ.get(TRUST_MODEL_CODE_VAR) != "1":
        return False  # code a model wrote from web material runs in-process only when the user opts in
    return verified.get("digest") == package_digest(package_dir)


TRUST_MODEL_CODE_VAR = "ENVFACTORY_TRUST_MODEL_CODE"


def untrusted_reason(package_dir: Path) -> str:
    """Why ``is_trusted`` said no, in words a user can act on."""
    try:
        verified = json.loads((package_dir / VERIFIED_FILE).read_text())
    except (json.JSONDecodeError, OSError):
        verified = {}
    if verified.get("model_written") and verified.get("digest") == package_digest(package_dir):
        return (f"{package_dir} passed the sandbox, but its tool code was written by a model; it runs in this "
                f"process only if you review it and set {TRUST_MODEL_CODE_VAR}=1 (or pass trust=True)")
    return (f"{package_dir} is neither bundled nor verified; run `envfactory envs validate {package_dir}` "
            "(sandboxed) first, or pass trust=True / --trust if you wrote it yourself")
