"""The ``@tool`` decorator: a Python function becomes a tool whose params schema comes from its type hints."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from cortex.adapters.tools.base import CallContext
from cortex.errors import ToolError
from cortex.manifests.plugin import Permissions, SideEffects, ToolDecl

INJECTABLE: tuple[type, ...] = (CallContext, Permissions)
"""Parameter types the python runtime fills in itself; they never appear in the schema."""

_ATTR = "__cortex_tool__"


@dataclass(frozen=True)
class ToolFunction:
    """A decorated function with its name, description and params model."""

    name: str
    description: str
    fn: Callable[..., Any]
    params_model: type[BaseModel]
    injected: dict[str, type]
    timeout_s: float | None = None
    idempotent: bool | None = None
    side_effects: SideEffects | None = None

    @property
    def params_schema(self) -> dict[str, Any]:
        """The JSON schema of the params, without pydantic's titles."""
        return _strip_titles(self.params_model.model_json_schema())

    def decl(self) -> ToolDecl:
        """The declaration this function stands for (manifest entries may override it)."""
        return ToolDecl(
            name=self.name,
            description=self.description,
            params=self.params_schema,
            timeout_s=self.timeout_s,
            idempotent=self.idempotent,
            side_effects=self.side_effects,
        )

    def bind(self, qualified: str, params: dict[str, Any], injections: dict[type, Any]) -> dict[str, Any]:
        """Validate and coerce ``params``, add injected values; ToolError names the bad field."""
        try:
            parsed = self.params_model.model_validate(params)
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"]) or "(params)"
            raise ToolError(f"invalid params for {qualified}: {where}: {err['msg']}") from exc
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        kwargs.update({name: injections[kind] for name, kind in self.injected.items()})
        return kwargs


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float | None = None,
    idempotent: bool | None = None,
    side_effects: SideEffects | None = None,
) -> Any:
    """Mark a function (sync or async) as a tool; usable bare (``@tool``) or with options."""

    def mark(func: Callable[..., Any]) -> Callable[..., Any]:
        summary, arg_docs = _parse_docstring(inspect.getdoc(func) or "")
        model, injected = _params_model(func, arg_docs)
        setattr(
            func,
            _ATTR,
            ToolFunction(
                name=name or func.__name__,
                description=description if description is not None else summary,
                fn=func,
                params_model=model,
                injected=injected,
                timeout_s=timeout_s,
                idempotent=idempotent,
                side_effects=side_effects,
            ),
        )
        return func

    return mark(fn) if fn is not None else mark


def tools_in(module: ModuleType) -> list[ToolFunction]:
    """Every ``@tool`` function defined in ``module``, in definition order."""
    found = [getattr(obj, _ATTR) for obj in vars(module).values() if hasattr(obj, _ATTR)]
    return sorted(found, key=lambda t: t.fn.__code__.co_firstlineno)


def _params_model(func: Callable[..., Any], arg_docs: dict[str, str]) -> tuple[type[BaseModel], dict[str, type]]:
    """Build the pydantic model of ``func``'s parameters; separate out the injected ones."""
    hints = get_type_hints(func, include_extras=True)
    fields: dict[str, Any] = {}
    injected: dict[str, type] = {}
    for param in inspect.signature(func).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"@tool {func.__name__}: *args and **kwargs cannot be described as params")
        annotation = hints.get(param.name, Any)
        if annotation in INJECTABLE:
            injected[param.name] = annotation
            continue
        default = ... if param.default is param.empty else param.default
        doc = arg_docs.get(param.name)
        fields[param.name] = (annotation, Field(default, description=doc) if doc else Field(default))
    model = create_model(
        f"{func.__name__}_params",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model, injected


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The first paragraph, and per-argument descriptions from a Google-style ``Args:`` section."""
    paragraphs = doc.strip().split("\n\n")
    summary = " ".join(paragraphs[0].split()) if paragraphs and paragraphs[0] else ""
    args: dict[str, str] = {}
    section = re.search(r"^(?:Args|Arguments|Parameters):\s*\n((?:[ \t]+.*\n?)+)", doc, re.MULTILINE)
    if section:
        current = None
        for line in section.group(1).splitlines():
            match = re.match(r"^\s+(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
            if match:
                current = match.group(1)
                args[current] = match.group(2).strip()
            elif current and line.strip():
                args[current] = f"{args[current]} {line.strip()}"
    return summary, args


def _strip_titles(schema: Any) -> Any:
    """Remove pydantic's ``title`` keys (noise for a model) without touching property names."""
    if isinstance(schema, list):
        return [_strip_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            out[key] = {name: _strip_titles(sub) for name, sub in value.items()}
        else:
            out[key] = _strip_titles(value)
    return out
