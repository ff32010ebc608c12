"""Parts of the documentation made from the code at build time, so they cannot drift from it.

A page asks for a part with an HTML comment on a line of its own:

- ``<!-- generated:cli-commands -->``: a table of every ``runlog`` command and what it does;
- ``<!-- generated:cli-command NAME -->``: the usage, help, arguments and options of
  ``runlog NAME``, as the application itself states them (its click command tree);
- ``<!-- generated:store-keys TYPE -->`` and ``<!-- generated:catalog-keys TYPE -->``: the
  configuration keys of one registered store or catalog type, from its pydantic fields.

The build fails (so ``mkdocs build --strict`` in the tests fails) when a page names a command
or type that does not exist, when the command line page leaves out a command the application
has or the configuration page a type the package registers, when the architecture page's
module map and the source tree differ (a module without its line, or a line without its module),
and when a page names a file of the repository (`rust/...`, `tests/...`) that is not there.
"""

from __future__ import annotations

import html
import re
import typing
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

_MARKER = re.compile(r"^<!-- generated:([a-z-]+)(?: ([A-Za-z0-9_-]+))? -->$", re.MULTILINE)

# The pages that must cover everything: every command, every registered type.
_CLI_PAGE = "cli.md"
_CONFIG_PAGE = "configuration.md"
_ARCHITECTURE_PAGE = "architecture.md"

# The package's own entry-point groups; a plugin installed beside it is not documented here.
_GROUPS = {"store-keys": "runlog_store.run_log_store", "catalog-keys": "runlog_store.catalog"}
_OWN_PACKAGE = "runlog_store."


def on_page_markdown(markdown: str, page: Any, config: Any, **_: Any) -> str:
    path = page.file.src_uri
    _check_paths(markdown, Path(config.config_file_path).parent, path)
    if path == _ARCHITECTURE_PAGE:
        _check_module_map(markdown, Path(config.config_file_path).parent, path)
    wanted: dict[str, set[str]] = {}

    def expand(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2) or ""
        wanted.setdefault(kind, set()).add(name)
        if kind == "cli-commands":
            return _cli_commands_table()
        if kind == "cli-command":
            return _cli_command(name, path)
        if kind in _GROUPS:
            return _keys_table(kind, name, path)
        raise PluginError(f"{path}: unknown generated part {kind!r}")

    markdown = _MARKER.sub(expand, markdown)
    if path == _CLI_PAGE:
        missing = sorted(set(_commands()) - wanted.get("cli-command", set()))
        if missing:
            raise PluginError(
                f"{path} has no section for the command(s) {', '.join(missing)}: add one with "
                "<!-- generated:cli-command NAME -->"
            )
    if path == _CONFIG_PAGE:
        for kind in _GROUPS:
            missing = sorted(set(_types(kind)) - wanted.get(kind, set()))
            if missing:
                raise PluginError(
                    f"{path} leaves out the registered type(s) {', '.join(missing)}: add "
                    f"<!-- generated:{kind} TYPE --> for each"
                )
    return markdown


# --- the command line ---------------------------------------------------------------------------


def _root() -> tuple[Any, Any]:
    """The runlog application's click command and its context (typer builds both)."""
    import typer.main

    from runlog_store.cli import app

    group = typer.main.get_command(app)
    return group, group.context_class(group, info_name="runlog")


def _commands() -> dict[str, tuple[Any, Any]]:
    """Every command, nested groups walked, by its name after ``runlog``."""
    found: dict[str, tuple[Any, Any]] = {}

    def walk(group: Any, ctx: Any, prefix: str) -> None:
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            if command is None or command.hidden:
                continue
            sub = command.context_class(command, info_name=name, parent=ctx)
            full = f"{prefix}{name}"
            if hasattr(command, "list_commands"):
                walk(command, sub, f"{full} ")
            else:
                found[full] = (command, sub)

    walk(*_root(), "")
    return found


def _text(value: str) -> str:
    """Help text as Markdown that shows it as written (no emphasis, no HTML)."""
    escaped = html.escape(" ".join(value.split()), quote=False)
    return re.sub(r"([\\`*_\[\]|])", r"\\\1", escaped)


def _paragraphs(help_text: str) -> str:
    paragraphs = [p for p in re.split(r"\n\s*\n", help_text.strip()) if p.strip()]
    return "\n\n".join(_text(p) for p in paragraphs)


def _cli_commands_table() -> str:
    rows = ["| command | what it does |", "| --- | --- |"]
    for name, (command, _ctx) in _commands().items():
        summary = command.get_short_help_str(limit=300)
        rows.append(f"| [`runlog {name}`](#runlog-{name.replace(' ', '-')}) | {_text(summary)} |")
    return "\n".join(rows)


def _cli_command(name: str, path: str) -> str:
    commands = _commands()
    if name not in commands:
        raise PluginError(
            f"{path} documents `runlog {name}`, which the application does not have "
            f"(it has {', '.join(commands)})"
        )
    command, ctx = commands[name]
    parts = [f"```text\n{command.get_usage(ctx)}\n```", _paragraphs(command.help or "")]
    arguments: list[str] = []
    options: list[str] = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or "--help" in getattr(param, "opts", ()):
            continue
        spelling, help_text = record
        row = f"| `{spelling}` | {_text(help_text)} |"
        (arguments if param.param_type_name == "argument" else options).append(row)
    if arguments:
        parts.append("\n".join(["| argument | |", "| --- | --- |", *arguments]))
    if options:
        parts.append("\n".join(["| option | |", "| --- | --- |", *options]))
    return "\n\n".join(p for p in parts if p)


# --- configuration keys -------------------------------------------------------------------------

# Fields every service has that say what it is; a configuration cannot set them.
_FIXED = frozenset({"service_name", "service_type", "supports_parallel_writes"})


def _types(kind: str) -> dict[str, str]:
    """The package's own registered types of a group: name -> 'module:Class'."""
    return {
        point.name: point.value
        for point in entry_points(group=_GROUPS[kind])
        if point.value.startswith(_OWN_PACKAGE)
    }


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{value}`" for value in typing.get_args(annotation))
    if origin is not None:
        args = typing.get_args(annotation)
        if type(None) in args:
            rest = [a for a in args if a is not type(None)]
            return " \\| ".join([*(_type_name(a) for a in rest), "`null`"])
    if isinstance(annotation, type):
        return {
            "str": "text",
            "bool": "`true` \\| `false`",
            "float": "number",
            "int": "integer",
        }.get(annotation.__name__, annotation.__name__)
    return _text(str(annotation))


def _yaml(value: Any) -> str:
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def _bounds(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for attribute, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            bound = getattr(item, attribute, None)
            if bound is not None:
                words.append(f"{sign} {bound}")
        if getattr(item, "min_length", None):
            words.append("not empty")
    return ", ".join(words)


def _keys_table(kind: str, type_name: str, path: str) -> str:
    types = _types(kind)
    if type_name not in types:
        raise PluginError(
            f"{path} documents the {kind.split('-')[0]} type {type_name!r}, which the package "
            f"does not register (it registers {', '.join(sorted(types))})"
        )
    point = next(p for p in entry_points(group=_GROUPS[kind]) if p.name == type_name)
    cls = point.load()
    rows = ["| key | value | default | limits and notes |", "| --- | --- | --- | --- |"]
    for key, field in cls.model_fields.items():
        if key in _FIXED:
            continue
        spellings = [f"`{key}`"]
        if isinstance(field.validation_alias, AliasChoices):
            spellings += [f"`{a}`" for a in field.validation_alias.choices if a != key]
        if field.default is PydanticUndefined and field.default_factory is None:
            default = "required"
        elif field.default_factory is not None:
            default = _yaml(field.default_factory())
        else:
            default = _yaml(field.default)
        notes = "; ".join(n for n in (_bounds(field), _text(field.description or "")) if n)
        value = _type_name(field.annotation)
        if "Secret" in value:
            value = "text (secret: never shown)"
        rows.append(f"| {' or '.join(spellings)} | {value} | {default} | {notes} |")
    if len(rows) == 2:
        return "It has no configuration keys."
    return "\n".join(rows)


# --- the module map -----------------------------------------------------------------------------

# The source trees the map covers, and the files in them that are modules.
_SOURCES = {"python/runlog_store": (".py", ".pyi"), "rust": (".rs",)}
_MAPPED = re.compile(r"^\| `((?:python/runlog_store|rust)/[^`]*)` \|", re.MULTILINE)


def _check_module_map(markdown: str, root: Path, path: str) -> None:
    """Every module file in the tree has its row, and every row names a file or folder that
    exists; a package's ``__init__.py`` or ``mod.rs`` may be covered by its folder's row."""
    mapped = set(_MAPPED.findall(markdown))
    modules: set[str] = set()
    for top, suffixes in _SOURCES.items():
        for file in (root / top).rglob("*"):
            if file.is_file() and file.suffix in suffixes and "__pycache__" not in file.parts:
                modules.add(file.relative_to(root).as_posix())
    covered = set(mapped)
    for module in modules:
        folder = module.rsplit("/", 1)[0] + "/"
        if module.endswith(("/__init__.py", "/mod.rs")) and folder in mapped:
            covered.add(module)
    missing = sorted(modules - covered)
    stale = sorted(m for m in mapped if not (root / m).exists())
    if missing or stale:
        raise PluginError(
            f"{path}: the module map and the source tree differ; "
            f"modules without a row: {', '.join(missing) or 'none'}; "
            f"rows without a module: {', '.join(stale) or 'none'}"
        )


# --- paths of the repository named in any page ---------------------------------------------------

_REPO_PATH = re.compile(r"`((?:rust|python|tests|benches|scripts|examples|docs)/[^`\s*<>]*)`")


def _check_paths(markdown: str, root: Path, path: str) -> None:
    """A file or folder of the repository a page names in code (`rust/writer.rs`) exists."""
    missing = sorted({p for p in _REPO_PATH.findall(markdown) if not (root / p).exists()})
    if missing:
        raise PluginError(f"{path} names files the repository does not have: {', '.join(missing)}")
