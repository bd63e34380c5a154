"""MkDocs hook: the config reference page is generated from the pydantic models in ``pipeline/config.py``.

``docs/config-reference.md`` holds the marker ``<!-- config-reference -->``; at build time it is
replaced by one table per config table (``[study]``, ``[region]``, ..., ``[dask.slurm]``) whose
rows are the model's fields: key, type, default, constraints and description, all read from the
code, so the page cannot disagree with what ``load_study`` accepts.
"""

from __future__ import annotations

import enum
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

MARKER = "<!-- config-reference -->"


def _model_of(annotation: object) -> type[BaseModel] | None:
    """The section model behind a field's annotation (``X`` or ``X | None``), if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _type_name(annotation: object) -> str:
    """A field's type as a reader of TOML sees it: ``"drive" | "gcs"``, ``list[int]``, ``NDVI | EVI``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is typing.Literal:
        return " | ".join(f'"{value}"' for value in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(arg) for arg in args if arg is not type(None))  # None: "not set"
    if origin in (list, tuple):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"[{', '.join(_type_name(arg) for arg in args)}]"
        return f"list[{_type_name(args[0])}]"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return " | ".join(f'"{member.value}"' for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__)
    return str(annotation)


def _toml(value: object) -> str:
    """A default written as it would be in the config."""
    if isinstance(value, enum.Enum):
        return _toml(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, BaseModel):
        return "(a table)"
    if isinstance(value, Path):
        return f'"{value}"'
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1e6:
        return f"{value:.0e}".replace("e+", "e")
    return str(value)


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    value = field.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "not set"
    return f"`{_toml(value)}`"


def _constraints(field: FieldInfo) -> str:
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<", "min_length": "at least"}
    found = []
    for item in field.metadata:
        for name, sign in words.items():
            value = getattr(item, name, None)
            if value is not None:
                found.append(f"{sign} {value}" + (" item(s)" if name == "min_length" else ""))
    return ", ".join(found)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def sections(model: type[BaseModel] | None = None, prefix: str = "") -> list[tuple[str, str, type[BaseModel]]]:
    """Every config table: (its TOML name, its description, its model), depth first from ``StudyConfig``."""
    if model is None:
        from pipeline.config import StudyConfig

        model = StudyConfig
    found = []
    for name, field in model.model_fields.items():
        section = _model_of(field.annotation)
        if section is not None:
            table = f"{prefix}{name}"
            found.append((table, field.description or "", section))
            found.extend(sections(section, f"{table}."))
    return found


def config_reference_markdown() -> str:
    """The reference: one heading and one table of keys per config table."""
    lines: list[str] = []
    for table, description, model in sections():
        lines += [f"## `[{table}]`", "", description, ""]
        keys = [(name, field) for name, field in model.model_fields.items() if _model_of(field.annotation) is None]
        if keys:
            lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, field in keys:
            constraints = _constraints(field)
            text = (field.description or "") + (f" ({constraints})" if constraints else "")
            lines.append(f"| `{name}` | {_cell(_type_name(field.annotation))} | {_cell(_default(field))} | "
                         f"{_cell(text)} |")
        nested = [name for name, field in model.model_fields.items() if _model_of(field.annotation) is not None]
        if nested:
            lines += ["", "Tables inside it: " + ", ".join(f"`[{table}.{name}]`" for name in nested) + "."]
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 (MkDocs' hook signature)
    """Fill in the config reference where the page asks for it."""
    if MARKER in markdown:
        return markdown.replace(MARKER, config_reference_markdown())
    return markdown
