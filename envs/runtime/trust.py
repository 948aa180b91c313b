"""Which packages may run their tool code in this process.

Verification is not trust: passing validation says an environment behaves as its tests say, never
that its code is safe to run here. Code runs in-process only when it is bundled with envfactory, or
when the user trusted its exact content (``envfactory envs trust NAME|PATH``, or EnvGen accepting
code that is byte for byte our own skeleton generator's output). Grants live in a trust store in the
user's config directory (``trusted.json``), keyed by the package's content digest and signed with a
key beside it (``trust.key``, mode 0600) that sandboxed code cannot read: nothing inside a package,
``verified.json`` included, makes it trusted. Everything else runs in the sandbox.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

from envfactory.envs.runtime.packages import CATALOG_DIR

VERIFIED_FILE = "verified.json"   # the validation record: informational, grants nothing
CONFIG_DIR_VAR = "ENVFACTORY_CONFIG_DIR"
STORE_FILE = "trusted.json"
KEY_FILE = "trust.key"
_lock = threading.Lock()


def config_dir() -> Path:
    """``ENVFACTORY_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/envfactory``, else ``~/.config/envfactory``."""
    if os.environ.get(CONFIG_DIR_VAR):
        return Path(os.environ[CONFIG_DIR_VAR])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "envfactory"


def package_digest(package_dir: Path) -> str:
    """Content hash of a package: every file but the validation record and caches. Symlinks are
    hashed as their target text, never followed (a link to /dev/zero must not hang the hash)."""
    package_dir = Path(package_dir)
    h = hashlib.sha256()
    for path in sorted(package_dir.rglob("*")):
        rel = path.relative_to(package_dir).as_posix()
        if rel == VERIFIED_FILE or "__pycache__" in rel:
            continue
        mode = path.lstat().st_mode
        if stat.S_ISLNK(mode):
            h.update(b"L" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
        elif stat.S_ISREG(mode):
            h.update(b"F" + rel.encode() + b"\0")
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            h.update(b"\0")
    return h.hexdigest()


def _key() -> bytes:
    path = config_dir() / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return key


def _mac(key: bytes, digest: str) -> str:
    return hmac.new(key, b"envfactory-trust\0" + digest.encode(), hashlib.sha256).hexdigest()


def _read_store() -> list[dict]:
    try:
        data = json.loads((config_dir() / STORE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    entries = data.get("trusted") if isinstance(data, dict) else None
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _write_store(entries: list[dict]) -> None:
    path = config_dir() / STORE_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{STORE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"trusted": entries}, indent=1), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def grant_trust(package_dir: Path, *, by: str = "user") -> dict:
    """Record that the user trusts this exact content of ``package_dir`` (an edit revokes it)."""
    package_dir = Path(package_dir).resolve()
    digest = package_digest(package_dir)
    with _lock:
        key = _key()
        entries = [e for e in _read_store() if e.get("digest") != digest]
        entry = {"digest": digest, "mac": _mac(key, digest), "path": str(package_dir), "name": _name(package_dir),
                 "by": by, "trusted_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_store(entries + [entry])
    return entry


def revoke_trust(package_dir: Path) -> int:
    """Forget every grant for this package's current content or its folder; how many were removed."""
    package_dir = Path(package_dir).resolve()
    digest = package_digest(package_dir)
    with _lock:
        entries = _read_store()
        kept = [e for e in entries if e.get("digest") != digest and e.get("path") != str(package_dir)]
        _write_store(kept)
    return len(entries) - len(kept)


def trusted_entries() -> list[dict]:
    """The grants in the store whose signature checks (a tampered entry is not listed as valid)."""
    key = _key() if (config_dir() / KEY_FILE).is_file() else None
    return [e | {"valid": bool(key) and hmac.compare_digest(str(e.get("mac", "")), _mac(key, str(e.get("digest", ""))))}
            for e in _read_store()]


def _name(package_dir: Path) -> str:
    try:
        return str(json.loads((package_dir / "env.json").read_text(encoding="utf-8")).get("name") or package_dir.name)
    except (OSError, json.JSONDecodeError, AttributeError):
        return package_dir.name


def is_bundled(package_dir: Path) -> bool:
    return CATALOG_DIR in Path(package_dir).resolve().parents


def is_trusted(package_dir: Path) -> bool:
    """Bundled packages, and packages whose current content the user trusted."""
    package_dir = Path(package_dir).resolve()
    if is_bundled(package_dir):
        return True
    key_path = config_dir() / KEY_FILE
    if not key_path.is_file():
        return False
    entries = _read_store()
    if not entries:
        return False
    digest = package_digest(package_dir)
    key = key_path.read_bytes()
    return any(e.get("digest") == digest and hmac.compare_digest(str(e.get("mac", "")), _mac(key, digest))
               for e in entries)


def untrusted_reason(package_dir: Path) -> str:
    """Why ``is_trusted`` said no, in words a user can act on."""
    return (f"{package_dir} is not trusted to run in this process (only bundled packages and packages you trust "
            f"are; a passed validation or a verified.json grants nothing). It runs in the sandbox; review its code "
            f"and run `envfactory envs trust {package_dir}` to run it in-process")
