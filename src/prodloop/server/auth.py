"""Projects, API keys and roles.

A key is shown once when it is created; the store keeps only its sha256 (keys are 256-bit random
tokens, so a fast hash is the right one). A key belongs to one project and sees that project only.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import sqlalchemy as sa

from prodloop.errors import Forbidden, NotFound, Unauthorized, ValidationFailed
from prodloop.store import dialect_insert, read_transaction, write_transaction
from prodloop.store.schema import api_keys, projects

KEY_PREFIX = "pl_"


class Role(StrEnum):
    ADMIN = "admin"
    INGEST = "ingest"
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


class Permission(StrEnum):
    WRITE_TRACES = "write:traces"
    READ = "read"
    # Lease items and label them (blind: an annotator's key never sees other people's labels).
    ANNOTATE = "annotate"
    # See labels and what is computed from them (agreement, gold accuracy, aggregates, datasets).
    # Annotators work blind and lack it.
    READ_LABELS = "read:labels"
    # See every label of an item, adjudicate disagreements, correct labels, read escalations.
    REVIEW = "review"
    ADMIN = "admin"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.INGEST: frozenset({Permission.WRITE_TRACES}),
    Role.ANNOTATOR: frozenset({Permission.READ, Permission.ANNOTATE}),
    Role.REVIEWER: frozenset(
        {Permission.READ, Permission.READ_LABELS, Permission.ANNOTATE, Permission.REVIEW}
    ),
    Role.VIEWER: frozenset({Permission.READ, Permission.READ_LABELS}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one project with one role."""

    key_id: int
    project_id: int
    project: str
    role: Role

    def require(self, permission: Permission) -> None:
        if permission not in ROLE_PERMISSIONS[self.role]:
            raise Forbidden(
                f"a key with role {self.role.value!r} may not {permission.value}",
                {"role": self.role.value, "needs": permission.value},
            )


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise ValidationFailed(f"role {role!r} is not one of {allowed}", {"role": role}) from None


def ensure_project(engine: sa.Engine, name: str) -> int:
    """The id of project ``name``, creating it if it does not exist."""
    if not name or len(name) > 100:
        raise ValidationFailed("a project name needs 1 to 100 characters", {"project": name})
    with write_transaction(engine) as connection:
        # Insert-if-absent, then read: safe when several replicas start on one empty store at once.
        insert = dialect_insert(connection, projects).values(name=name, created_ns=time.time_ns())
        connection.execute(insert.on_conflict_do_nothing(index_elements=[projects.c.name]))
        return int(connection.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar_one())


def project_id(engine: sa.Engine, name: str) -> int:
    with read_transaction(engine) as connection:
        found = connection.execute(sa.select(projects.c.id).where(projects.c.name == name)).scalar()
    if found is None:
        raise NotFound(f"project {name!r} does not exist; create a key for it with `prodloop keys create`")
    return int(found)


def create_api_key(engine: sa.Engine, project: str, role: str | Role, name: str | None = None) -> str:
    """Create a key for ``project`` (created if new) and return it; it is never shown again."""
    role = parse_role(str(role))
    pid = ensure_project(engine, project)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with write_transaction(engine) as connection:
        connection.execute(
            api_keys.insert().values(
                project_id=pid,
                role=role.value,
                name=name,
                key_hash=hash_key(key),
                prefix=key[:10],
                created_ns=time.time_ns(),
            )
        )
    return key


def authenticate(engine: sa.Engine, key: str | None) -> Principal:
    """The principal behind ``key``, or 401."""
    if not key:
        raise Unauthorized("an API key is needed: send `Authorization: Bearer KEY`")
    with read_transaction(engine) as connection:
        row = connection.execute(
            sa.select(api_keys.c.id, api_keys.c.project_id, api_keys.c.role, projects.c.name)
            .join(projects, projects.c.id == api_keys.c.project_id)
            .where(api_keys.c.key_hash == hash_key(key), api_keys.c.revoked_ns.is_(None))
        ).first()
    if row is None:
        raise Unauthorized("this API key is not known to prodloop (or was revoked)")
    return Principal(key_id=row.id, project_id=row.project_id, project=row.name, role=Role(row.role))


def has_admin_keys(engine: sa.Engine) -> bool:
    """Whether any admin key was ever made (revoked ones count: revoking is a choice to respect)."""
    with read_transaction(engine) as connection:
        found = connection.execute(
            sa.select(api_keys.c.id).where(api_keys.c.role == Role.ADMIN.value).limit(1)
        )
        return found.first() is not None


def bootstrap_admin(engine: sa.Engine, home: Path) -> str | None:
    """On a store with no admin key yet (a new one, or one that only `prodloop demo` or `ingest`
    filled): create an admin key for project ``default`` (created if new), write it to
    ``HOME/admin-key`` (mode 0600) and return it. Returns None when an admin key exists."""
    if has_admin_keys(engine):
        return None
    key = create_api_key(engine, "default", Role.ADMIN, name="bootstrap admin")
    home.mkdir(parents=True, exist_ok=True)
    path = home / "admin-key"
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(key + "\n")
    return key
