"""Label schemas: named, immutable, versioned definitions of what annotators record.

A schema such as ``support-intent@3`` holds one or more fields, each of one type:

``categorical``
    one option out of ``options``;
``multi_label``
    any number of ``options`` (``min_choices`` / ``max_choices`` bound how many);
``ordinal``
    one of ``options``, which are listed in order (``ordinal_rank`` gives the position);
``numeric``
    a number between ``minimum`` and ``maximum`` (either bound may be left out);
``text``
    free text, at most ``max_length`` characters if that is set;
``pairwise``
    a preference between two outputs: ``A``, ``B`` or ``tie`` (the options are fixed).

plus guidelines in Markdown. A schema never changes: :meth:`LabelSchema.next_version` returns a new
version and leaves the old one as it was, so every label can record the version it was given under and
be checked against it with :func:`validate_label`.

Schemas are read from a dict (:meth:`LabelSchema.from_document`) or JSON text
(:meth:`LabelSchema.from_json`); :func:`prodloop.annotation.read_schema_file` reads YAML files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import rfc8785
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from prodloop.errors import InvalidRequest, ValidationFailed

FieldType = Literal["categorical", "multi_label", "ordinal", "numeric", "text", "pairwise"]

PAIRWISE_OPTIONS: tuple[str, ...] = ("A", "B", "tie")
_OPTION_TYPES = frozenset({"categorical", "multi_label", "ordinal"})

_FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_SCHEMA_NAME = r"^[a-z0-9][a-z0-9_-]*$"
_SCHEMA_NAME_RE = re.compile(_SCHEMA_NAME)
_VERSION_RE = re.compile(r"^[0-9]+$")


# --------------------------------------------------------------------------------------------------
# The definition


class FieldSpec(BaseModel):
    """One field of a label schema: its name, type, options or bounds, help text and whether it is
    required."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=_FIELD_NAME, max_length=64)]
    type: FieldType
    options: tuple[str, ...] = ()
    help: str = ""
    required: bool = True
    minimum: float | None = None
    maximum: float | None = None
    max_length: Annotated[int, Field(ge=1)] | None = None
    min_choices: Annotated[int, Field(ge=0)] | None = None
    max_choices: Annotated[int, Field(ge=1)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _fill_pairwise_options(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("type") == "pairwise" and not data.get("options"):
            return {**data, "options": PAIRWISE_OPTIONS}
        return data

    @model_validator(mode="after")
    def _check_definition(self) -> FieldSpec:
        where = f"field {self.name!r} is {self.type}"
        if self.type in _OPTION_TYPES:
            if not self.options:
                raise ValueError(f"{where} and needs a non-empty list of options")
            if any(not option.strip() for option in self.options):
                raise ValueError(f"{where}; its options must not be blank")
            duplicates = sorted({option for option in self.options if self.options.count(option) > 1})
            if duplicates:
                raise ValueError(f"{where}; its options must be unique, repeated: {', '.join(duplicates)}")
        elif self.type == "pairwise":
            if self.options != PAIRWISE_OPTIONS:
                raise ValueError(f"{where}; its options are always A, B, tie and need not be given")
        elif self.options:
            raise ValueError(f"{where} and takes no options")
        self._check_only_for("numeric", minimum=self.minimum, maximum=self.maximum)
        self._check_only_for("text", max_length=self.max_length)
        self._check_only_for("multi_label", min_choices=self.min_choices, max_choices=self.max_choices)
        for bound in (self.minimum, self.maximum):
            if bound is not None and not math.isfinite(bound):
                raise ValueError(f"{where}; its minimum and maximum must be finite numbers")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"{where}; its minimum {self.minimum:g} is above its maximum {self.maximum:g}")
        self._check_choices(where)
        return self

    def _check_only_for(self, field_type: str, **settings: object) -> None:
        given = [key for key, value in settings.items() if value is not None]
        if given and self.type != field_type:
            raise ValueError(
                f"field {self.name!r} is {self.type}; {' and '.join(given)} apply only to {field_type} fields"
            )

    def _check_choices(self, where: str) -> None:
        low, high = self.min_choices, self.max_choices
        if low is not None and high is not None and low > high:
            raise ValueError(f"{where}; its min_choices {low} is above its max_choices {high}")
        for name, count in (("min_choices", low), ("max_choices", high)):
            if count is not None and count > len(self.options):
                raise ValueError(f"{where}; its {name} {count} is more than its {len(self.options)} options")


class LabelSchema(BaseModel):
    """A named, immutable, versioned label schema: ``support-intent@3``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(pattern=_SCHEMA_NAME, max_length=100)]
    version: Annotated[int, Field(ge=1, strict=True)] = 1
    description: str = ""
    guidelines: str = Field(default="", description="Guidelines for annotators, in Markdown.")
    fields: Annotated[tuple[FieldSpec, ...], Field(min_length=1)]

    @field_validator("fields")
    @classmethod
    def _check_unique_fields(cls, fields: tuple[FieldSpec, ...]) -> tuple[FieldSpec, ...]:
        names = [spec.name for spec in fields]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"field names must be unique, repeated: {', '.join(repeated)}")
        return fields

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> LabelSchema:
        """Read a schema from a parsed document; every problem is a 422 that names where it is."""
        if not isinstance(document, Mapping):
            raise ValidationFailed(
                f"a label schema document is an object with name, version and fields, "
                f"not {type(document).__name__}"
            )
        try:
            return cls.model_validate(dict(document))
        except ValidationError as error:
            raise ValidationFailed.from_errors(error.errors()) from None

    @classmethod
    def from_json(cls, text: str | bytes) -> LabelSchema:
        """Read a schema from JSON text."""
        try:
            document = json.loads(text)
        except (ValueError, UnicodeDecodeError) as error:
            raise InvalidRequest(f"the label schema is not valid JSON: {error}") from None
        return cls.from_document(document)

    @property
    def ref(self) -> str:
        """``name@version``, as labels record it."""
        return f"{self.name}@{self.version}"

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.fields)

    def content_hash(self) -> str:
        """SHA-256 (hex) of the RFC 8785 canonical JSON of what annotators are given: the fields,
        guidelines and description. Name and version are left out, so an edit that changes nothing
        hashes the same as the version it came from."""
        content = self.model_dump(mode="json", exclude={"name", "version"})
        return hashlib.sha256(rfc8785.dumps(content)).hexdigest()

    def field(self, name: str) -> FieldSpec:
        """The field called ``name``; a 422 naming the schema's fields if there is none."""
        for spec in self.fields:
            if spec.name == name:
                return spec
        raise ValidationFailed(
            f"field {name!r} is not in {_describe(self)} (its fields: {', '.join(self.field_names)})",
            [{"field": name, "problem": "unknown field", "allowed": list(self.field_names)}],
        )

    def next_version(self, **changes: Any) -> LabelSchema:
        """A new schema, one version up, with ``changes`` (fields, guidelines, description) applied;
        this one is left as it was."""
        fixed = {"name", "version"} & changes.keys()
        if fixed:
            raise ValidationFailed(
                f"a new version of {self.ref} cannot change its {' or '.join(sorted(fixed))}; "
                "create a new schema to rename it"
            )
        document = self.model_dump()
        document.update(changes)
        document["version"] = self.version + 1
        return type(self).from_document(document)


def parse_schema_ref(ref: str) -> tuple[str, int | None]:
    """``"support-intent@3"`` -> ``("support-intent", 3)``; ``"support-intent"`` (the latest version)
    -> ``("support-intent", None)``."""
    name, at, version = ref.partition("@")
    if not _SCHEMA_NAME_RE.match(name):
        raise ValidationFailed(
            f"schema reference {ref!r} needs a schema name (lowercase letters, digits, '-' and '_') "
            "before any @version, e.g. support-intent@3"
        )
    if not at:
        return name, None
    if not _VERSION_RE.match(version) or not 1 <= int(version) <= 2**31 - 1:
        raise ValidationFailed(
            f"schema reference {ref!r} has version {version!r}; a version is a whole number from 1, "
            "e.g. support-intent@3 (leave out @version for the latest)"
        )
    return name, int(version)


# --------------------------------------------------------------------------------------------------
# Checking labels against a schema


def validate_label(schema: LabelSchema, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check one label's values against ``schema`` and return them normalised, in field order.

    Options stay option strings, numbers become floats, multi-label values become a list without
    repeats in the order of the options; an optional field that is absent comes back as ``None``.
    Raises :class:`~prodloop.errors.ValidationFailed` whose ``detail`` lists every problem as
    ``{"field", "value", "problem", "allowed"}`` and whose message names the first.
    """
    if not isinstance(values, Mapping):
        raise ValidationFailed(
            f"a label for {_describe(schema)} is an object of field values, not {type(values).__name__}"
        )
    problems: list[dict[str, Any]] = []
    for key, value in values.items():
        if key not in schema.field_names:
            message = (
                f"field {key!r} is not in {_describe(schema)} (its fields: {', '.join(schema.field_names)})"
            )
            problems.append(_problem(message, key, value, "unknown field", list(schema.field_names)))
    normalised: dict[str, Any] = {}
    for spec in schema.fields:
        value = values.get(spec.name)
        if _is_missing(spec, value):
            if spec.required:
                message = f"field {spec.name!r} is required by {_describe(schema)} and is missing"
                problems.append(_problem(message, spec.name, value, "missing", None))
            normalised[spec.name] = None
            continue
        result = _check_value(schema, spec, value)
        if isinstance(result, _Problem):
            problems.append(result.detail)
        else:
            normalised[spec.name] = result
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValidationFailed(f"{problems[0]['message']}{more}", problems)
    return normalised


def ordinal_rank(schema: LabelSchema, field: str, value: str) -> int:
    """The position (from 0) of ``value`` among the options of the ordinal field ``field``."""
    spec = schema.field(field)
    if spec.type != "ordinal":
        raise ValidationFailed(
            f"field {field!r} of {_describe(schema)} is {spec.type}, not ordinal; its values have no rank"
        )
    if not isinstance(value, str) or value not in spec.options:
        raise ValidationFailed(_not_an_option(schema, spec, value))
    return spec.options.index(value)


class _Problem:
    def __init__(self, detail: dict[str, Any]) -> None:
        self.detail = detail


def _problem(message: str, field: str, value: Any, problem: str, allowed: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {"field": field, "value": value, "problem": problem, "message": message}
    if allowed is not None:
        detail["allowed"] = allowed
    return detail


def _describe(schema: LabelSchema) -> str:
    return f"schema {schema.name} v{schema.version}"


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else f"{shown[:57]}..."


def _not_an_option(schema: LabelSchema, spec: FieldSpec, value: Any) -> str:
    return (
        f"label {_show(value)} is not an option of field {spec.name!r} "
        f"({_describe(schema)} allows: {', '.join(spec.options)})"
    )


def _is_missing(spec: FieldSpec, value: Any) -> bool:
    if value is None:
        return True
    return spec.type == "text" and isinstance(value, str) and not value.strip()


def _check_value(schema: LabelSchema, spec: FieldSpec, value: Any) -> Any:
    if spec.type in ("categorical", "ordinal", "pairwise"):
        if isinstance(value, str) and value in spec.options:
            return value
        return _Problem(
            _problem(
                _not_an_option(schema, spec, value), spec.name, value, "not an option", list(spec.options)
            )
        )
    if spec.type == "multi_label":
        return _check_choices(schema, spec, value)
    if spec.type == "numeric":
        return _check_number(schema, spec, value)
    return _check_text(schema, spec, value)


def _check_choices(schema: LabelSchema, spec: FieldSpec, value: Any) -> Any:
    allowed = list(spec.options)
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        message = (
            f"field {spec.name!r} takes a list of options, not {_show(value)} "
            f"({_describe(schema)} allows: {', '.join(spec.options)})"
        )
        return _Problem(_problem(message, spec.name, value, "not a list", allowed))
    for item in value:
        if not isinstance(item, str) or item not in spec.options:
            message = _not_an_option(schema, spec, item)
            return _Problem(_problem(message, spec.name, item, "not an option", allowed))
    chosen = [option for option in spec.options if option in value]
    low, high = spec.min_choices, spec.max_choices
    if (low is not None and len(chosen) < low) or (high is not None and len(chosen) > high):
        message = (
            f"field {spec.name!r} has {len(chosen)} choices, {_show(chosen)}; "
            f"{_describe(schema)} allows {_count_range(low, high)} of: {', '.join(spec.options)}"
        )
        return _Problem(_problem(message, spec.name, value, "wrong number of choices", allowed))
    return chosen


def _count_range(low: int | None, high: int | None) -> str:
    if low is not None and high is not None:
        return f"{low}" if low == high else f"{low} to {high}"
    return f"at least {low}" if low is not None else f"at most {high}"


def _check_number(schema: LabelSchema, spec: FieldSpec, value: Any) -> Any:
    low, high = spec.minimum, spec.maximum
    allowed = {"minimum": low, "maximum": high}
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        message = f"value {_show(value)} of field {spec.name!r} is not a finite number ({_describe(schema)})"
        return _Problem(_problem(message, spec.name, value, "not a number", allowed))
    number = float(value)
    if (low is not None and number < low) or (high is not None and number > high):
        if low is not None and high is not None:
            bounds = f"{low:g} to {high:g}"
        else:
            bounds = f"at least {low:g}" if low is not None else f"at most {high:g}"
        message = (
            f"value {value!r} is out of range for field {spec.name!r} ({_describe(schema)} allows: {bounds})"
        )
        return _Problem(_problem(message, spec.name, value, "out of range", allowed))
    return number


def _check_text(schema: LabelSchema, spec: FieldSpec, value: Any) -> Any:
    allowed = {"max_length": spec.max_length}
    if not isinstance(value, str):
        message = f"value {_show(value)} of field {spec.name!r} is not text ({_describe(schema)})"
        return _Problem(_problem(message, spec.name, value, "not text", allowed))
    if spec.max_length is not None and len(value) > spec.max_length:
        message = (
            f"text of field {spec.name!r} is {len(value)} characters long "
            f"({_describe(schema)} allows at most {spec.max_length})"
        )
        return _Problem(_problem(message, spec.name, value, "too long", allowed))
    return value


__all__ = [
    "PAIRWISE_OPTIONS",
    "FieldSpec",
    "FieldType",
    "LabelSchema",
    "ordinal_rank",
    "parse_schema_ref",
    "validate_label",
]
