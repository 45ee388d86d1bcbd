"""The edge: plain data, JSON and YAML in and out of the config classes.

This module owns the one ``cattrs.Converter(forbid_extra_keys=True)`` and is the only place
that parses or writes YAML/JSON. The config classes never parse (attrs' "keep ``__init__``
dumb"); this module turns what users write into them and back:

* **Tagged union.** A column mapping names its class with ``kind`` (and ``sampler`` for
  ``kind: sampler``). The tags are written first when unstructuring.
* **Strict scalars.** cattrs' defaults would turn ``"ten"`` into an error but ``1.7`` into 1
  and ``"false"`` into ``True``; our hooks accept an ``int`` only for ``int``, numbers for
  ``float``, real booleans for ``bool``, strings for ``str``.
* **Every problem, with its path.** Field errors are collected by cattrs' detailed
  validation, invariant failures by :func:`._validators.collecting_problems`, unknown keys by
  ``forbid_extra_keys``; :func:`cattrs.transform_error` flattens them with our
  ``format_exception``, and each becomes ``columns[3].prompt: <what is wrong>``. The loader
  raises one :class:`~trio_designer.ConfigError` listing them all (the pipeline adds the
  cross-references of :func:`._pipeline.reference_problems` to them).
* **Exact round trip.** ``structure(unstructure(x)) == x`` for every config class, and the
  unstructured data survives JSON and YAML unchanged. Defaults are omitted when writing.

Data flows one way: this module knows the *parts* of a pipeline (columns, models, providers,
run settings) and plain data; :mod:`._pipeline` imports it and assembles a
:class:`~._pipeline.PipelineConfig` from :func:`structure_sections`, and writes one with
:func:`unstructure_sections`. Nothing here imports :mod:`._pipeline`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin

import attrs
import cattrs
import yaml
from cattrs.errors import (
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from .._core._suggest import did_you_mean
from .._exceptions import ConfigError, PluginError
from ._bounded import (
    MAX_CONFIG_BYTES,
    MAX_NESTING,
    LimitExceeded,
    data_depth_problem,
    measure_yaml,
)
from ._columns import (
    COLUMN_BASES,
    COLUMN_CLASSES,
    SAMPLER_CLASSES,
    ColumnConfig,
    CustomColumn,
    LLMStructuredColumn,
    PluginColumn,
    PluginSampler,
    Rubric,
    ValidationColumn,
    schema_to_dict,
)
from ._models import InferenceParams, ModelConfig, ModelPrice, ModelProvider
from ._plugin_columns import column_plugin, sampler_plugin
from ._plugin_processors import processor_plugin
from ._plugins import COLUMNS, PROCESSORS, SAMPLERS, plugin_names, source_of
from ._processors import PROCESSOR_CONFIGS, ChatMessage, CustomProcessor, ProcessorBase
from ._run import RunConfig
from ._seed import SeedConfig, SeedPartition, SeedSelection
from ._validators import InvalidFieldError, collecting_problems, is_number, short_repr

T = TypeVar("T")

#: Every attrs class the converter knows: the parts of a pipeline. The pipeline itself is
#: assembled from them by :mod:`._pipeline` (see :func:`structure_sections`).
CONFIG_CLASSES: tuple[type[Any], ...] = (
    *COLUMN_CLASSES,
    Rubric,
    InferenceParams,
    ModelProvider,
    ModelConfig,
    RunConfig,
    SeedPartition,
    SeedSelection,
    SeedConfig,
    ModelPrice,
)

# Resolve the string annotations now, while each class's ``__module__`` still names the module
# that defines it: the public modules rewrite ``__module__`` to where users import the class
# from (``trio_designer._public.present_as``), and cattrs resolves types lazily.
for _cls in (*CONFIG_CLASSES, *PROCESSOR_CONFIGS.values(), ChatMessage):
    attrs.resolve_types(_cls)
del _cls

_KINDS: dict[str, type[Any]] = {"sampler": SAMPLER_CLASSES[0]}
_KINDS.update((cls.kind, cls) for cls in COLUMN_CLASSES if cls not in SAMPLER_CLASSES)
_SAMPLERS: dict[str, type[Any]] = {cls.sampler: cls for cls in SAMPLER_CLASSES}
_COMMON_COLUMN_FIELDS = ("name", "drop", "skip_when", "skip_value", "depends_on")
_TOP_LEVEL_KEYS = ("python_path", "providers", "models", "run", "columns", "seed", "processors")


class _Problems(ValueError):
    """Problems found by a hook, each ``(path below the hook's value, message)``."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(message for _, message in self.problems))

    @classmethod
    def one(cls, message: str, *, at: str = "") -> _Problems:
        return cls([(at, message)])


converter = cattrs.Converter(forbid_extra_keys=True)
"""The one converter of trio_designer's configs. Use the functions below rather than it."""


# -- strict scalars ----------------------------------------------------------------------------


def _expected(what: str, value: Any) -> _Problems:
    return _Problems.one(f"expected {what}, got {short_repr(value)}")


def _structure_str(value: Any, _: Any) -> str:
    if isinstance(value, str):
        return value
    raise _expected("a string", value)


def _structure_int(value: Any, _: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _expected("an integer", value)


def _structure_float(value: Any, _: Any) -> float:
    if is_number(value):
        return float(value)
    match = _YAML_TEXT_NUMBER.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is not None:
        # YAML 1.1 (PyYAML) reads 1e3 as text: a float needs a dot and a signed exponent.
        mantissa, exponent = match.group(1), match.group(2)
        mantissa += "" if "." in mantissa else ".0"
        exponent = exponent if exponent[:1] in "+-" else f"+{exponent}"
        raise _Problems.one(
            f"expected a number, got the text {short_repr(value)} (YAML reads a number in "
            f"this form as text: write {mantissa}e{exponent})"
        )
    raise _expected("a number", value)


_YAML_TEXT_NUMBER = re.compile(r"([-+]?(?:\d+\.?\d*|\.\d+))[eE]([-+]?\d+)")


def _structure_bool(value: Any, _: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _expected("true or false", value)


converter.register_structure_hook(str, _structure_str)
converter.register_structure_hook(int, _structure_int)
converter.register_structure_hook(float, _structure_float)
converter.register_structure_hook(bool, _structure_bool)


def _is_literal(type_: Any) -> bool:
    return get_origin(type_) is Literal


def _literal_hook(type_: Any) -> Callable[[Any, Any], Any]:
    allowed = get_args(type_)
    expected = ", ".join(repr(item) for item in allowed)

    def structure_literal(value: Any, _: Any) -> Any:
        for item in allowed:
            if type(value) is type(item) and value == item:
                return item
        raise _Problems.one(f"must be one of {expected}: {short_repr(value)}")

    return structure_literal


converter.register_structure_hook_factory(_is_literal, _literal_hook)


# -- collections: lists (not strings!) and string-keyed mappings -------------------------------


def _is_variadic_tuple(type_: Any) -> bool:
    args = get_args(type_)
    return get_origin(type_) is tuple and len(args) == 2 and args[1] is Ellipsis


def _note(exc: Exception, index: int | str, type_: Any) -> Exception:
    note = IterableValidationNote(f"Structuring @ {index!r}", index, type_)
    exc.__notes__ = [*getattr(exc, "__notes__", []), note]
    return exc


def _tuple_hook(type_: Any) -> Callable[[Any, Any], tuple[Any, ...]]:
    item_type = get_args(type_)[0]
    item_hook = converter.get_structure_hook(item_type)

    def structure_tuple(value: Any, _: Any) -> tuple[Any, ...]:
        if not isinstance(value, list | tuple):
            raise _expected("a list", value)
        items: list[Any] = []
        errors: list[Exception] = []
        for index, item in enumerate(value):
            try:
                items.append(item_hook(item, item_type))
            except Exception as exc:  # cattrs' own idiom: collect, then raise a group
                errors.append(_note(exc, index, item_type))
        if errors:
            raise IterableValidationError(f"While structuring {type_!r}", errors, type_)
        return tuple(items)

    return structure_tuple


def _is_str_keyed_dict(type_: Any) -> bool:
    args = get_args(type_)
    return get_origin(type_) is dict and len(args) == 2 and args[0] is str


def _dict_hook(type_: Any) -> Callable[[Any, Any], dict[str, Any]]:
    value_type = get_args(type_)[1]
    value_hook = converter.get_structure_hook(value_type)

    def structure_dict(value: Any, _: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise _expected("a mapping", value)
        result: dict[str, Any] = {}
        errors: list[Exception] = []
        for key, item in value.items():
            if isinstance(key, int) and not isinstance(key, bool):
                key = str(key)  # YAML reads `5: excellent` with an int key
            if not isinstance(key, str):
                errors.append(_expected("string keys", key))
                continue
            try:
                result[key] = value_hook(item, value_type)
            except Exception as exc:  # collect, then raise a group
                errors.append(_note(exc, key, value_type))
        if errors:
            raise IterableValidationError(f"While structuring {type_!r}", errors, type_)
        return result

    return structure_dict


converter.register_structure_hook_factory(_is_variadic_tuple, _tuple_hook)
converter.register_structure_hook_factory(_is_str_keyed_dict, _dict_hook)


# -- special fields ----------------------------------------------------------------------------


def _structure_function(value: Any, _: Any) -> Any:
    if isinstance(value, str) or callable(value):
        return value  # the field's validator checks the import path's form
    raise _expected("an import path like 'package.module:function'", value)


def _structure_schema(value: Any, _: Any) -> Any:
    schema = schema_to_dict(value)
    if isinstance(schema, Mapping):
        return dict(schema)
    raise _expected("a JSON schema (a mapping) or a class with model_json_schema()", value)


def _optional(hook: Callable[[Any, Any], Any], value: Any, type_: Any) -> Any:
    return None if value is None else hook(value, type_)


_STRUCTURE_OVERRIDES: dict[type[Any], dict[str, Any]] = {
    CustomColumn: {"function": override(struct_hook=_structure_function)},
    LLMStructuredColumn: {"schema": override(struct_hook=_structure_schema)},
    ValidationColumn: {
        "function": override(struct_hook=lambda v, t: _optional(_structure_function, v, t)),
        "schema": override(struct_hook=lambda v, t: _optional(_structure_schema, v, t)),
    },
}


# -- attrs classes: every invariant failure, with its field ------------------------------------


def _class_hook(cls: type[T]) -> Callable[[Any, Any], T]:
    fields_hook = make_dict_structure_fn(cls, converter, **_STRUCTURE_OVERRIDES.get(cls, {}))
    plugin = _is_plugin_class(cls)

    def structure_config_class(value: Any, _: Any) -> T:
        if isinstance(value, cls):
            return value  # already built (builder keyword forms may nest objects)
        if not isinstance(value, Mapping):
            raise _expected(f"a mapping of {cls.__name__} fields", value)
        with collecting_problems() as problems:
            if plugin:
                instance = _plugin_fields(fields_hook, value, cls)
            else:
                instance = fields_hook(value, cls)
        if problems:
            raise _Problems(problems)
        return instance

    return structure_config_class


def _is_plugin_class(type_: Any) -> bool:
    """A plugin's column config class (:class:`PluginColumn` subclass; see :mod:`._plugins`)."""
    return isinstance(type_, type) and issubclass(type_, PluginColumn) and type_ is not PluginColumn


def _is_config_class(type_: Any) -> bool:
    return type_ in CONFIG_CLASSES or _is_plugin_class(type_)


converter.register_structure_hook_factory(_is_config_class, _class_hook)


def _plugin_fields(fields_hook: Callable[[Any, Any], T], value: Any, cls: type[T]) -> T:
    """A plugin class's fields hook; its own attrs validators (``attrs.validators.ge``) raise
    plain ``ValueError``/``TypeError`` at ``__init__``, reported with their message."""
    try:
        return fields_hook(value, cls)
    except BaseValidationError as exc:
        # cattrs wraps the error of ``cls(...)`` itself (a validator's) without a field note.
        inner = exc.exceptions[0] if len(exc.exceptions) == 1 else None
        if (
            isinstance(inner, ValueError | TypeError)
            and not isinstance(inner, _Problems | InvalidFieldError | BaseValidationError)
            and not getattr(inner, "__notes__", None)
        ):
            raise _Problems.one(str(inner) or type(inner).__name__) from None
        raise


def _structure_column(value: Any, _: Any) -> Any:
    if isinstance(value, COLUMN_BASES):
        return value
    if not isinstance(value, Mapping):
        raise _expected("a mapping of column fields", value)
    cls = _column_class(value)
    fields = {key: item for key, item in value.items() if key not in ("kind", "sampler")}
    if cls in SAMPLER_CLASSES or issubclass(cls, PluginSampler) or "sampler" not in value:
        return converter.structure(fields, cls)
    return converter.structure({**fields, "sampler": value["sampler"]}, cls)  # report it


def _column_class(value: Mapping[str, Any]) -> type[Any]:
    """The class a column mapping's ``kind`` (and ``sampler``) name: a built-in one, else the
    one an installed plugin registers (looked for only then, see :mod:`._plugins`)."""
    kind = _tag(value, "kind", _KINDS, "column kind", COLUMNS, column_plugin)
    if kind != "sampler":
        return _KINDS.get(kind) or _plugin_class(column_plugin, kind, "kind")
    sampler = _tag(value, "sampler", _SAMPLERS, "sampler", SAMPLERS, sampler_plugin)
    return _SAMPLERS.get(sampler) or _plugin_class(sampler_plugin, sampler, "sampler")


def _plugin_class(find: Callable[[str], Any], name: str, key: str) -> type[Any]:
    try:
        cls = find(name)
    except PluginError as exc:
        raise _Problems.one(str(exc), at=key) from None
    assert cls is not None  # _tag checked that a plugin registers the name
    return cls  # type: ignore[no-any-return]


def _tag(
    value: Mapping[str, Any],
    key: str,
    choices: Mapping[str, Any],
    what: str,
    group: str,
    find: Callable[[str], Any],
) -> str:
    if key not in value:
        expected = "expected one of " + ", ".join(repr(name) for name in sorted(choices))
        raise _Problems.one(f"required field is missing; {expected}", at=key)
    tag = value[key]
    if isinstance(tag, str) and tag in choices:
        return tag
    plugins = plugin_names(group)  # only for a kind that is not built in; imports nothing
    if isinstance(tag, str) and tag in plugins:
        return tag
    known = sorted({*choices, *plugins})
    expected = "expected one of " + ", ".join(repr(name) for name in known)
    raise _Problems.one(f"unknown {what} {short_repr(tag)}; {expected}", at=key)


converter.register_structure_hook_func(lambda t: t == ColumnConfig, _structure_column)


# -- unstructuring -----------------------------------------------------------------------------

_lenient: ContextVar[bool] = ContextVar("trio_designer_lenient_functions", default=False)


@contextmanager
def lenient_functions(enabled: bool) -> Iterator[None]:
    token = _lenient.set(enabled)
    try:
        yield
    finally:
        _lenient.reset(token)


def function_path(function: Callable[..., Any] | str, *, column: str) -> str:
    """The ``"module:qualname"`` import path of a custom column's function.

    Raises:
      ConfigError: the function cannot be imported by that path (a lambda, a local function,
        a callable object), unless inside ``unstructure_config(..., lenient=True)``.
    """
    if isinstance(function, str):
        return function
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", None)
    path = f"{module}:{qualname}"
    if (
        isinstance(module, str)
        and isinstance(qualname, str)
        and "." not in qualname  # a method or a local function cannot be loaded back
        and _resolves(module, qualname, function)
    ):
        return path
    if not isinstance(qualname, str):  # a callable object: describe it by its class
        path = f"{module}:{type(function).__qualname__}"
    if _lenient.get():
        return path
    raise ConfigError(
        f"custom column {column!r}: cannot serialize its function {path!r}: "
        "only a module-level function can be written as an import path (not a lambda, a "
        "local function, a method or a callable object); define it at module level, or give "
        "its import path as 'package.module:function'"
    )


def _resolves(module: str, qualname: str, function: object) -> bool:
    """Whether ``module:qualname`` leads back to ``function`` (without importing anything)."""
    target: object = sys.modules.get(module)
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is function


def _unstructure_hook(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
    overrides: dict[str, Any] = {}
    if cls is CustomColumn or cls is ValidationColumn:
        overrides["function"] = override(omit=True)
    fields_hook = make_dict_unstructure_fn(
        cls, converter, _cattrs_omit_if_default=True, **overrides
    )
    tags = _tags(cls)
    order = _key_order(cls)

    def unstructure_config_class(instance: Any) -> dict[str, Any]:
        data = fields_hook(instance)
        if isinstance(instance, CustomColumn):
            data["function"] = function_path(instance.function, column=instance.name)
        if isinstance(instance, ValidationColumn) and instance.function is not None:
            data["function"] = function_path(instance.function, column=instance.name)
        return {**tags, **{key: data[key] for key in order if key in data}}

    return unstructure_config_class


def _tags(cls: type[Any]) -> dict[str, str]:
    if cls in SAMPLER_CLASSES or (_is_plugin_class(cls) and issubclass(cls, PluginSampler)):
        return {"kind": cls.kind, "sampler": cls.sampler}
    if cls in COLUMN_CLASSES or _is_plugin_class(cls):
        return {"kind": cls.kind}
    return {}


def _key_order(cls: type[Any]) -> list[str]:
    """Field order when writing: columns put ``name``, then their own fields, then the common
    ones; other classes keep declaration order."""
    names = [field.name for field in attrs.fields(cls)]
    if cls not in COLUMN_CLASSES and not _is_plugin_class(cls):
        return names
    own = [name for name in names if name not in _COMMON_COLUMN_FIELDS]
    return ["name", *own, *_COMMON_COLUMN_FIELDS[1:]]


converter.register_unstructure_hook_factory(_is_config_class, _unstructure_hook)


# -- processors (``processors:``), tagged by ``kind`` through PROCESSOR_CONFIGS ------------------


def _is_processor_class(type_: Any) -> bool:
    return type_ is ChatMessage or (
        isinstance(type_, type) and issubclass(type_, ProcessorBase) and type_ is not ProcessorBase
    )


def _resolve(cls: Any) -> None:
    """Resolve a plugin's processor class's annotations (built-in ones are resolved above)."""
    if not getattr(cls, "__attrs_types_resolved__", False):
        attrs.resolve_types(cls)


def _processor_class_hook(cls: type[T]) -> Callable[[Any, Any], T]:
    _resolve(cls)
    overrides: dict[str, Any] = (
        {"function": override(struct_hook=_structure_function)}
        if issubclass(cls, CustomProcessor)
        else {}
    )
    fields_hook = make_dict_structure_fn(cls, converter, **overrides)
    plugin = source_of(cls) is not None  # its own attrs validators raise plain ValueErrors

    def structure_processor_class(value: Any, _: Any) -> T:
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise _expected(f"a mapping of {cls.__name__} fields", value)
        with collecting_problems() as problems:
            if plugin:
                instance = _plugin_fields(fields_hook, value, cls)
            else:
                instance = fields_hook(value, cls)
        if problems:
            raise _Problems(problems)
        return instance

    return structure_processor_class


def _structure_processor(value: Any, _: Any) -> Any:
    if isinstance(value, ProcessorBase):
        return value
    if not isinstance(value, Mapping):
        raise _expected("a mapping of processor fields", value)
    kind = _tag(value, "kind", PROCESSOR_CONFIGS, "processor kind", PROCESSORS, processor_plugin)
    cls = PROCESSOR_CONFIGS.get(kind) or _plugin_class(processor_plugin, kind, "kind")
    fields = {key: item for key, item in value.items() if key != "kind"}
    return converter.structure(fields, cls)


def _processor_unstructure_hook(cls: type[Any]) -> Callable[[Any], dict[str, Any]]:
    _resolve(cls)
    is_custom = issubclass(cls, CustomProcessor)
    overrides: dict[str, Any] = {"function": override(omit=True)} if is_custom else {}
    fields_hook = make_dict_unstructure_fn(
        cls, converter, _cattrs_omit_if_default=True, **overrides
    )
    kind = getattr(cls, "kind", None) if cls is not ChatMessage else None

    def unstructure_processor(instance: Any) -> dict[str, Any]:
        data = fields_hook(instance)
        if is_custom:
            label = instance.name or "custom processor"
            data["function"] = function_path(instance.function, column=label)
        return {"kind": kind, **data} if kind is not None else data

    return unstructure_processor


converter.register_structure_hook_factory(_is_processor_class, _processor_class_hook)
converter.register_structure_hook_func(lambda t: t is ProcessorBase, _structure_processor)
converter.register_unstructure_hook_factory(_is_processor_class, _processor_unstructure_hook)


# -- error reporting ---------------------------------------------------------------------------


def problems_from(exc: BaseException, path: str = "") -> list[str]:
    """Flatten a structuring failure into ``"<path>: <message>"`` lines.

    Uses :func:`cattrs.transform_error` to walk the exception groups and build paths; our
    ``format_exception`` describes each leaf exception (one leaf may hold several problems,
    e.g. every invariant an object violates) and keeps attrs validators' messages.
    """
    described: list[Sequence[tuple[str, str]]] = []

    def format_exception(leaf: BaseException, type_: Any) -> str:
        described.append(_describe(leaf, type_))
        return f"#{len(described) - 1}"  # a token: "#3 @ $path" is split apart below

    lines: list[str] = []
    for line in cattrs.transform_error(exc, path, format_exception):
        token, _, where = line.partition(" @ ")
        for below, message in described[int(token[1:])]:
            lines.append(_located(_join(where, below), message))
    return lines


def _describe(exc: BaseException, type_: Any) -> Sequence[tuple[str, str]]:
    if isinstance(exc, _Problems):
        return exc.problems
    if isinstance(exc, InvalidFieldError):
        return [(exc.field, str(exc))]
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [field.name for field in attrs.fields(exc.cl)]
        return [("", _unknown_field(key, known)) for key in sorted(exc.extra_fields)]
    if isinstance(exc, KeyError):
        return [("", "required field is missing")]
    if isinstance(exc, ConfigError):
        return [("", str(exc))]
    return [("", cattrs.v.format_exception(exc, type_))]


def _unknown_field(key: str, known: Sequence[str]) -> str:
    expected = "expected one of " + ", ".join(map(repr, known))
    return f"unknown field {key!r}; " + did_you_mean(key, known, otherwise=expected)


def _join(path: str, below: str) -> str:
    if not below:
        return path
    if not path or below.startswith("["):
        return f"{path}{below}"
    return f"{path}.{below}"


def _located(path: str, message: str) -> str:
    return f"{path}: {message}" if path else message


# -- structuring entry points ------------------------------------------------------------------

_STRUCTURE_ERRORS = (BaseValidationError, ValueError)


def structure(data: Any, cls: type[T], *, path: str = "") -> T:
    """Build a config object of class ``cls`` (or ``ColumnConfig``) from plain data.

    Raises:
      ConfigError: listing every problem, each prefixed with ``path`` and the field's path.
    """
    try:
        result: T = converter.structure(data, cls)
    except _STRUCTURE_ERRORS as exc:
        raise ConfigError(problems_from(exc, path) or [f"{path}: invalid value"]) from None
    return result


def unstructure(instance: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a config object; defaults omitted.

    Raises:
      ConfigError: a custom column's function cannot be written as an import path.
    """
    return converter.unstructure(instance)


def unstructure_sections(
    *,
    providers: Sequence[ModelProvider],
    models: Sequence[ModelConfig],
    run: RunConfig,
    columns: Sequence[ColumnConfig],
    python_path: Sequence[str] = (),
    lenient: bool = False,
    seed: SeedConfig | None = None,
    processors: Sequence[ProcessorBase] = (),
) -> dict[str, Any]:
    """The plain data of a whole pipeline, from its parts (:meth:`PipelineConfig.to_dict`).

    Sections are written in the order a reader wants them (python_path, providers, models,
    run, columns); empty ``python_path``/``providers``/``models`` and a default ``run`` are
    left out.

    Args:
      lenient: write a lambda or local custom function as its ``"module:qualname"`` instead
        of raising (see :meth:`PipelineConfig.to_dict`).

    Raises:
      ConfigError: a custom column's function cannot be written as an import path.
    """
    with lenient_functions(lenient):
        data: dict[str, Any] = {}
        if python_path:
            data["python_path"] = list(python_path)
        if providers:
            data["providers"] = [converter.unstructure(item) for item in providers]
        if models:
            data["models"] = [converter.unstructure(item) for item in models]
        run_data = converter.unstructure(run)
        if run_data:
            data["run"] = run_data
        if seed is not None:
            data["seed"] = converter.unstructure(seed)
        data["columns"] = [converter.unstructure(column) for column in columns]
        if processors:
            data["processors"] = [converter.unstructure(item) for item in processors]
    return data


@attrs.frozen
class Section:
    """The items of one list section that structured cleanly (with their indices), and the
    names salvaged from the ones that did not."""

    items: list[tuple[int, Any]]
    salvaged: list[str]

    def values(self) -> list[Any]:
        """The clean items, in order."""
        return [item for _, item in self.items]

    @classmethod
    def load(
        cls, data: Mapping[str, Any], key: str, item_type: Any, name_key: str, problems: list[str]
    ) -> Section:
        value = data.get(key)
        section = cls([], [])
        if value is None:
            return section
        if not isinstance(value, list | tuple):
            problems.append(f"{key}: expected a list, got {short_repr(value)}")
            return section
        for index, raw in enumerate(value):
            try:
                section.items.append((index, structure(raw, item_type, path=f"{key}[{index}]")))
            except ConfigError as exc:
                problems.extend(exc.problems)
                name = raw.get(name_key) if isinstance(raw, Mapping) else None
                if isinstance(name, str):
                    section.salvaged.append(name)
        return section


@attrs.frozen(kw_only=True)
class Sections:
    """The parts of a pipeline structured from plain data, and every problem found on the way.

    Attributes:
      providers, models, columns: the list sections.
      run: the run settings (defaults when absent or broken).
      python_path: the directories custom code may be imported from, as written.
      problems: path-qualified problems of structure and fields (not cross-references).
      seed: the ``seed:`` section, if any (``None`` also when broken: see ``problems``).
    """

    providers: Section
    models: Section
    columns: Section
    run: RunConfig
    python_path: tuple[str, ...]
    problems: tuple[str, ...]
    seed: SeedConfig | None = None
    processors: Section = attrs.field(factory=lambda: Section([], []))


def structure_sections(data: Any) -> Sections:
    """Structure each part of a pipeline from plain data, reporting every problem at once.

    Each section (and each list item) is structured on its own, so one broken column does
    not hide the problems of the others. The caller (:mod:`._pipeline`) then checks the
    cross-references among the items that structured cleanly, with the names salvaged from
    broken items counted as declared, and builds the pipeline.

    Raises:
      ConfigError: ``data`` is not a mapping at all.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"a pipeline config must be a mapping with a 'columns' list, got {short_repr(data)}"
        )
    problems = [_unknown_top_level(key) for key in data if key not in _TOP_LEVEL_KEYS]
    python_path = _structure_python_path(data.get("python_path"), problems)
    providers = Section.load(data, "providers", ModelProvider, "name", problems)
    models = Section.load(data, "models", ModelConfig, "alias", problems)
    run = _structure_run(data.get("run"), problems)
    columns = Section.load(data, "columns", ColumnConfig, "name", problems)
    seed = _structure_seed(data.get("seed"), problems)
    processors = Section.load(data, "processors", ProcessorBase, "name", problems)
    raw_columns = data.get("columns")
    if raw_columns is None or (isinstance(raw_columns, list | tuple) and not raw_columns):
        problems.append("columns: a pipeline needs at least one column; list them under 'columns'")
    return Sections(
        providers=providers,
        models=models,
        columns=columns,
        run=run,
        python_path=python_path,
        problems=tuple(problems),
        seed=seed,
        processors=processors,
    )


def _unknown_top_level(key: Any) -> str:
    expected = "expected one of " + ", ".join(map(repr, _TOP_LEVEL_KEYS))
    hint = (
        did_you_mean(key, _TOP_LEVEL_KEYS, otherwise=expected) if isinstance(key, str) else expected
    )
    return f"unknown top-level field {short_repr(key)}; {hint}"


def _structure_python_path(value: Any, problems: list[str]) -> tuple[str, ...]:
    """``python_path``: one directory (a string) or a list of them, relative to the config."""
    if value is None:
        return ()
    entries = [value] if isinstance(value, str) else value
    if not isinstance(entries, list | tuple):
        problems.append(
            f"python_path: expected a directory or a list of directories, got {short_repr(value)}"
        )
        return ()
    good: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, str) or not entry.strip() or "\x00" in entry:
            problems.append(
                f"python_path[{index}]: expected a directory path (a non-empty string), got "
                f"{short_repr(entry)}"
            )
        else:
            good.append(entry)
    return tuple(good)


def _structure_seed(value: Any, problems: list[str]) -> SeedConfig | None:
    if value is None:
        return None
    try:
        return structure(value, SeedConfig, path="seed")
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None


def _structure_run(value: Any, problems: list[str]) -> RunConfig:
    try:
        return structure({} if value is None else value, RunConfig, path="run")
    except ConfigError as exc:
        problems.extend(exc.problems)
        return RunConfig()


# -- JSON and YAML -----------------------------------------------------------------------------


_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader when PyYAML was built with it (about 6x faster on big configs; it also
caps nesting at 1000 levels itself), else the pure-Python one. Both build the same nodes."""


class _Loader(_BaseLoader):  # type: ignore[misc]
    """PyYAML's safe loader, minus two surprises.

    * Timestamps stay strings: ``start: 2024-01-01`` is the string a
      :class:`DatetimeSampler` expects, not a ``datetime.date`` (which JSON cannot hold).
    * A key repeated in one mapping is an error, not a silent overwrite.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                continue  # the base class refuses unhashable keys ("? [a, b]") with a mark
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, double-quoting strings that hold a Unicode line break.

    PyYAML writes NEL (U+0085) raw inside a plain or single-quoted scalar, where the
    reader folds it into a space; in double quotes it is escaped and survives.
    """


def _represent_str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = '"' if any(char in text for char in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_str)


def _check_size(text: str | bytes) -> None:
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"the config is {len(text):,} bytes, more than the limit of {MAX_CONFIG_BYTES:,}; "
            "split the data out of it (a config describes columns, it does not hold datasets)"
        )


def load_yaml(text: str) -> Any:
    """Parse YAML (safe subset; timestamps stay strings; duplicate keys rejected; bounded).

    Raises:
      ConfigError: the text is not valid YAML (the message gives the line and column), or it
        exceeds a limit of :mod:`._bounded` (size, alias expansion, nesting).
    """
    return load_yaml_located(text)[0]


def load_yaml_located(text: str) -> tuple[Any, dict[str, int]]:
    """:func:`load_yaml`, and the 1-based line of each path near the top
    (``{"columns[3].prompt": 12}``) for messages."""
    _check_size(text)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines = measure_yaml(node)
        return loader.construct_document(node), lines
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML{_yaml_position(exc)}: {_yaml_reason(exc)}") from None
    except LimitExceeded as exc:
        raise ConfigError(str(exc)) from None
    except RecursionError:  # the pure-Python composer on deep nesting
        raise ConfigError(str(LimitExceeded(_DEEP))) from None
    except ValueError as exc:  # int("9" * 5000): past Python's digit limit
        raise ConfigError(_number_problem(exc)) from None
    finally:
        loader.dispose()


def _number_problem(exc: ValueError) -> str:
    """A number the parser refused (more digits than Python converts), as a config problem."""
    if "digits" in str(exc):
        return (
            f"the config holds a number with more than {sys.get_int_max_str_digits():,} "
            "digits; no setting takes one that large"
        )
    return f"the config holds a value that cannot be read: {str(exc)[:200]}"


_DEEP = f"the config nests lists and mappings more than {MAX_NESTING} levels deep; flatten it"


def _yaml_position(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""


def _yaml_reason(exc: yaml.YAMLError) -> str:
    reason = str(getattr(exc, "problem", None) or exc)
    return reason if len(reason) <= 200 else reason[:197] + "..."


def load_json(text: str) -> Any:
    """Parse JSON (bounded like YAML: size and nesting).

    Raises:
      ConfigError: the text is not valid JSON (the message gives the line and column), or it
        exceeds a limit of :mod:`._bounded`.
    """
    _check_size(text)
    try:
        data = json.loads(text, object_pairs_hook=_json_object)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError(
            f"invalid JSON: duplicate key {exc.args[0]!r} in one object (the second would "
            "silently replace the first); keep one"
        ) from None
    except RecursionError:
        raise ConfigError(_DEEP) from None
    except ValueError as exc:  # int("9" * 5000): past Python's digit limit
        raise ConfigError(_number_problem(exc)) from None
    problem = data_depth_problem(data)
    if problem is not None:
        raise ConfigError(problem)
    return data


class _DuplicateKey(Exception):
    """A JSON object names one key twice; ``args[0]`` is the key."""


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, refusing a repeated key (as the YAML loader does)."""
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateKey(key)
        data[key] = value
    return data


def load_file(path: str | os.PathLike[str]) -> Any:
    """Read and parse a ``.json``, ``.yaml`` or ``.yml`` file.

    Raises:
      ConfigError: unknown suffix, unreadable file, or invalid content.
    """
    return load_file_located(path)[0]


def load_file_located(path: str | os.PathLike[str]) -> tuple[Any, dict[str, int]]:
    """:func:`load_file`, and the lines of paths (YAML only; empty for JSON).

    The size limit is checked on the file's size before it is read.
    """
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ConfigError(
            f"cannot tell the format of {str(file)!r}: use a .yaml, .yml or .json file"
        )
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_CONFIG_BYTES + 1)
        _check_size(raw)
        text = raw.decode("utf-8")
    except IsADirectoryError:
        raise ConfigError(
            f"cannot read config file {str(file)!r}: it is a directory; name the config file"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read config file {str(file)!r}: {reason}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(_not_utf8(file, raw, exc)) from None
    if suffix == ".json":
        return load_json(text), {}
    return load_yaml_located(text)


def _not_utf8(file: Path, raw: bytes, exc: UnicodeDecodeError) -> str:
    """Where a config stops being UTF-8, and what to do."""
    source = "latin1"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        found, source = "it is UTF-16 text", "utf-16"
    else:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        found = f"byte 0x{raw[exc.start]:02x} at line {line}, column {column} is not UTF-8"
    return (
        f"cannot read config file {str(file)!r}: {found}; configs are UTF-8 text, so save it "
        f"as UTF-8 (e.g. `iconv -f {source} -t utf-8`)"
    )


def dump_json(data: Any, *, indent: int | None = 2) -> str:
    """Write plain data as JSON (strict: no NaN or infinity).

    Raises:
      ConfigError: the data holds a value JSON cannot represent.
    """
    try:
        return json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot write the config as JSON: {exc}") from None


def dump_yaml(data: Any) -> str:
    """Write plain data as block-style YAML, keys in their given order.

    Raises:
      ConfigError: the data holds a value YAML's safe subset cannot represent.
    """
    try:
        return yaml.dump(
            data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot write the config as YAML: {exc}") from None
