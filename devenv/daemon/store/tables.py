"""The store's tables: desired state (workspaces, their uploaded projects), tokens, grants, the audit log.

Observed state is not stored here: it lives on the engines (labels) and the reconciler reads it.
Changing a table means adding an Alembic migration in migrations/versions.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    and_,
    or_,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from devenv.daemon.store import states


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Workspace(Base):
    """One workspace: what it should be (desired, project, image) and the last state we saw or made."""

    __tablename__ = "workspaces"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    backend: Mapped[str] = mapped_column(String(64))
    desired: Mapped[str] = mapped_column(String(16))  # running | stopped | deleted
    state: Mapped[str] = mapped_column(String(16))  # pending ... lost (see devenv.daemon.store.states)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    generation: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every request that changes desired
    project_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    image_tag: Mapped[str | None] = mapped_column(String(200), default=None)
    image_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    container_id: Mapped[str | None] = mapped_column(String(80), default=None)
    ssh_port: Mapped[int | None] = mapped_column(Integer, default=None)
    ports: Mapped[list[Any]] = mapped_column(JSON, default=list)
    autostop_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    last_active_at: Mapped[float | None] = mapped_column(Float, default=None)  # unix time
    started_at: Mapped[float | None] = mapped_column(Float, default=None)  # unix time the container last started
    gpu: Mapped[str | None] = mapped_column(String(64), default=None)  # as the spec asks: "A100:1", "2"
    keep_volume: Mapped[int] = mapped_column(Integer, default=0)  # for a pending delete
    ever_ran: Mapped[int] = mapped_column(Integer, default=0)  # a failed first start is rolled back
    recreate: Mapped[int] = mapped_column(Integer, default=0)  # rebuild asked: a new container even if same image
    volume_existed: Mapped[int] = mapped_column(Integer, default=0)  # the home predates this record: keep it
    setup: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # secrets, repo, data: last results
    pins: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # from a snapshot: {"commit", "snapshot"}
    code: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # the uploaded project folder: hash, files
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


def container_up_clause() -> ColumnElement[bool]:
    """states.container_up as a query condition on workspaces."""
    return or_(
        Workspace.state == states.RUNNING,
        and_(Workspace.state == states.FAILED, Workspace.error_code == states.HOOK_FAILED),
    )


class Dotfiles(Base):
    """A person's dotfiles repository, cloned into each of their workspaces (Codespaces, Coder)."""

    __tablename__ = "dotfiles"

    person: Mapped[str] = mapped_column(String(128), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    install: Mapped[str | None] = mapped_column(Text, default=None)  # its install script; found when None
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Project(Base):
    """An uploaded project (devenv.yaml, devenv.lock, requirement files), stored once by content hash."""

    __tablename__ = "projects"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    spec_path: Mapped[str] = mapped_column(String(255))  # as the user named it, for error messages
    files: Mapped[dict[str, Any]] = mapped_column(JSON)  # relative path -> text
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Event(Base):
    """The audit and event log: every state change and every changing API call, with its actor."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_workspace_id", "workspace", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    workspace: Mapped[str | None] = mapped_column(String(64), default=None)
    kind: Mapped[str] = mapped_column(String(32))  # api | state | progress | autostop | reconcile | daemon
    actor: Mapped[str] = mapped_column(String(128))
    message: Mapped[str] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(128), default=None)  # the workspace's, when it happened


class Token(Base):
    """An API token for TCP clients; only its SHA-256 is kept."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)  # may grant and revoke on any workspace


class Grant(Base):
    """One person's access to one workspace (beyond its owner, who always has it).

    A revoked or expired grant stays as a row with `ended_at` set: the workspace's sshd keeps that
    person's key id in its revocation list until they are granted again.
    """

    __tablename__ = "grants"
    __table_args__ = (UniqueConstraint("workspace", "person"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    person: Mapped[str] = mapped_column(String(128), index=True)
    ssh: Mapped[bool] = mapped_column(Boolean, default=False)
    jupyter: Mapped[bool] = mapped_column(Boolean, default=False)
    share_secrets: Mapped[bool] = mapped_column(Boolean, default=False)  # the owner's own secrets stay in place
    expires_at: Mapped[float | None] = mapped_column(Float, default=None)  # unix time; None: until revoked
    granted_by: Mapped[str] = mapped_column(String(128))
    granted_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), default=None)
    ended_by: Mapped[str | None] = mapped_column(String(128), default=None)  # a person, or "expired"


class Secret(Base):
    """A person's own secret, or the team's: the value only as Fernet ciphertext (devenv.daemon.services.secrets)."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("scope", "person", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(16))  # person | team
    person: Mapped[str] = mapped_column(String(128))  # the owner for scope person; "" for team
    ciphertext: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class Snapshot(Base):
    """A reproducibility record: the image, lock, commit (and dirty diff's hash), data and W&B runs
    of a workspace at one moment; `devenv up --from-snapshot ID` makes a workspace at exactly these."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    workspace: Mapped[str] = mapped_column(String(64), index=True)
    owner: Mapped[str] = mapped_column(String(128), index=True)
    made_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    project_hash: Mapped[str | None] = mapped_column(String(64), default=None)  # the upload it was built from
    record: Mapped[dict[str, Any]] = mapped_column(JSON)


class DaemonMeta(Base):
    """Facts about the store itself; `id` labels what its daemon makes (see identity.py)."""

    __tablename__ = "daemon_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Host(Base):
    """A machine with a Docker engine that workspaces run on, reached over SSH (`devenv host add`), or a
    cloud instance devenv provisioned (kind "aws"). Its login key only as Fernet ciphertext."""

    __tablename__ = "hosts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(512))  # ssh://user@host[:port]
    kind: Mapped[str] = mapped_column(String(16), default="ssh")  # ssh | aws
    identity: Mapped[str] = mapped_column(Text)  # the private key, sealed with the secrets key
    public_key: Mapped[str] = mapped_column(Text)  # its .pub line, to show and to check
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)  # a cloud instance's id, region, price
    added_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
