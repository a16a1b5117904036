"""Relic manifests: a long-lived service a run can start, call and stop (schema, loader, resolved spec).

A relic is a command the relic pool runs as its own process group, with a free port in ``PORT``
(and ``{port}`` in its arguments), a health check, named HTTP endpoints, a restart policy and a
time to live. See docs/pools.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from cortex.errors import ManifestError
from cortex.manifests.workflow import validation_problem
from cortex.manifests.yaml_lines import load_yaml_with_lines

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]


class _Strict(BaseModel):
    """Base for relic manifest models: unknown fields are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HealthCheck(_Strict):
    """How the pool knows the service is up: an HTTP GET (status below 400) or a TCP connect."""

    type: Literal["http", "tcp"] = "http"
    path: str = Field(default="/health", pattern=r"^/")
    interval_s: float = Field(default=5.0, gt=0)
    timeout_s: float = Field(default=2.0, gt=0)
    start_timeout_s: float = Field(default=30.0, gt=0)
    failures: int = Field(default=3, ge=1)


class Endpoint(_Strict):
    """One named HTTP endpoint of the service."""

    method: HttpMethod = "GET"
    path: str = Field(pattern=r"^/")
    description: str = ""
    timeout_s: float = Field(default=30.0, gt=0)


class RestartPolicy(_Strict):
    """How often a crashed or unhealthy service is restarted, and how long to wait before each try."""

    max_restarts: int = Field(default=3, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)
    backoff_factor: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=30.0, ge=0)


class RelicManifest(_Strict):
    """A relic: the command, its environment, health check, endpoints, TTL and restart policy."""

    kind: Literal["relic"] = "relic"
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]*$", max_length=64)
    description: str = ""
    command: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str = "."
    health: HealthCheck = HealthCheck()
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    ttl_s: float = Field(default=3600.0, gt=0)
    restart: RestartPolicy = RestartPolicy()
    stop_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("cwd")
    @classmethod
    def _absolute(cls, value: str, info: ValidationInfo) -> str:
        """The working directory, relative to the manifest's folder, made absolute."""
        base = Path((info.context or {}).get("base_dir", Path.cwd()))
        return str((base / value).resolve())

    @field_validator("endpoints")
    @classmethod
    def _names(cls, endpoints: dict[str, Endpoint]) -> dict[str, Endpoint]:
        """Endpoint names are identifiers (the model writes them in params)."""
        for name in endpoints:
            if not name.replace("_", "a").replace("-", "a").isalnum():
                raise ValueError(f"endpoint name {name!r}: use letters, digits, '_' and '-'")
        return endpoints


class HealthSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Resolved health check."""

    type: str = "http"
    path: str = "/health"
    interval_s: float = 5.0
    timeout_s: float = 2.0
    start_timeout_s: float = 30.0
    failures: int = 3


class EndpointSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Resolved endpoint."""

    path: str
    method: str = "GET"
    description: str = ""
    timeout_s: float = 30.0


class RestartSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Resolved restart policy."""

    max_restarts: int = 3
    backoff_s: float = 0.5
    backoff_factor: float = 2.0
    max_backoff_s: float = 30.0

    def delay_s(self, restart: int) -> float:
        """The wait before restart number ``restart`` (1-based): exponential, capped."""
        return min(self.backoff_s * self.backoff_factor ** (restart - 1), self.max_backoff_s)


class RelicSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A relic as stored in the manifests bucket (the manifest's JSON, ``cwd`` absolute)."""

    name: str
    command: tuple[str, ...]
    cwd: str
    description: str = ""
    env: dict[str, str] = msgspec.field(default_factory=dict)
    health: HealthSpec = msgspec.field(default_factory=HealthSpec)
    endpoints: dict[str, EndpointSpec] = msgspec.field(default_factory=dict)
    ttl_s: float = 3600.0
    restart: RestartSpec = msgspec.field(default_factory=RestartSpec)
    stop_timeout_s: float = 5.0


def load_relic_manifest(path: str | Path) -> RelicManifest:
    """Load and validate a relic manifest; errors raise ``ManifestError`` naming file, line and field."""
    path = Path(path)
    data, locate = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise ManifestError(f"{path}:1: a relic manifest must be a mapping of fields")
    try:
        return RelicManifest.model_validate(data, context={"base_dir": path.parent.resolve()})
    except ValidationError as exc:
        raise validation_problem(path, exc, locate) from exc


def resolve_relic(manifest: RelicManifest) -> RelicSpec:
    """The spec to store (the same JSON ``cortex apply`` stores for any manifest, typed)."""
    data: dict[str, Any] = manifest.model_dump(mode="json")
    return msgspec.convert(data, RelicSpec)
