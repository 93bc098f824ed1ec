"""Finds a project, reads `seeknal_project.yml` and its node files, and validates the whole.

`load_project` either returns a complete, consistent `Project` or raises one `ProjectError`
listing every problem found, so nothing downstream ever sees a half-valid project.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from functools import cached_property
from pathlib import Path

from seeknal_dagster import sql as sqlmod
from seeknal_dagster import templating
from seeknal_dagster.errors import Problem, ProjectError
from seeknal_dagster.graph import Graph, SelectionError
from seeknal_dagster.graph import select as select_nodes
from seeknal_dagster.specs import (
    NAME_PATTERN,
    ExposureSpec,
    NodeSpec,
    ProfileSpec,
    RuleSpec,
    SourceSpec,
    UnsupportedSpec,
    did_you_mean,
    parse_node,
    parse_python_file,
)
from seeknal_dagster.storage import ENV_NAME_PATTERN
from seeknal_dagster.yaml_io import YamlFileError, load_yaml_file

logger = logging.getLogger(__name__)

PROJECT_FILE = "seeknal_project.yml"
_KNOWN_KEYS = {"name", "max_workers", "schedules", "allow_external_paths", "ttl"}
_IGNORED_KEYS = {"version", "profile", "config-version", "config_version", "state_backend"}
_NOT_NODE_FILES = re.compile(
    r"^(seeknal_project|profiles.*|workspace|dagster|dagster_cloud)\.ya?ml$"
)
_SCHEDULE_KEYS = {"name", "cron", "select", "env"}


@dataclass(frozen=True)
class Schedule:
    """A schedule from `seeknal_project.yml`: run `select` in `env` on `cron`."""

    name: str
    cron: str
    select: tuple[str, ...] = ()
    env: str = "prod"


@dataclass(frozen=True)
class Project:
    """A validated project: its root, settings and supported nodes in file order."""

    root: Path
    name: str
    nodes: Mapping[str, NodeSpec]
    max_workers: int | None = None
    schedules: tuple[Schedule, ...] = ()
    unsupported: tuple[UnsupportedSpec, ...] = ()
    warnings: tuple[str, ...] = ()
    ttl_days: float = 7.0
    allow_external_paths: bool = False

    @cached_property
    def graph(self) -> Graph:
        return Graph({node_id: spec.inputs for node_id, spec in self.nodes.items()})

    @property
    def target(self) -> Path:
        return self.root / "target"

    def resolve_path(self, relative: str) -> Path:
        """A node file's path (relative to the project root) as an absolute path."""
        path = Path(relative)
        return path if path.is_absolute() else self.root / path


def find_project_root(start: Path | None = None, explicit: Path | None = None) -> Path:
    """The project root: `explicit`, else $SEEKNAL_PROJECT_DIR, else searched upwards.

    Raises:
        ProjectError: no `seeknal_project.yml` was found.
    """
    candidate = explicit or (
        Path(os.environ["SEEKNAL_PROJECT_DIR"]) if os.environ.get("SEEKNAL_PROJECT_DIR") else None
    )
    if candidate is not None:
        candidate = candidate.expanduser().resolve()
        if (candidate / PROJECT_FILE).is_file():
            return candidate
        raise ProjectError(
            [
                Problem(
                    str(candidate),
                    "",
                    f"no {PROJECT_FILE} in this folder",
                    f"create {PROJECT_FILE} with `name: my_project`, or point "
                    "--project at the folder that has it",
                )
            ]
        )
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return folder
    raise ProjectError(
        [
            Problem(
                str(here),
                "",
                f"no {PROJECT_FILE} here or in any parent folder",
                "run the command inside a project, or pass --project PATH",
            )
        ]
    )


def load_project(
    root: Path,
    params: Mapping[str, str] | None = None,
    run_date: date | None = None,
    today: date | None = None,
) -> Project:
    """Reads and validates the project at `root`, resolving `{{ ... }}` parameters.

    Args:
        root: the project root.
        params: `--params`, flattened (see `templating.parse_cli_params`).
        run_date: `--date`, the value of `{{ run_date }}`.
        today: the value of `{{ today }}` (default: the clock).
        When all three are None, what the CLI exported to the environment is used, so that
        Dagster's step processes see the same project as the command that started them.

    Raises:
        ProjectError: every problem of the project, each with file and key.
    """
    root = root.resolve()
    problems: list[Problem] = []
    warnings: list[str] = []
    config = _read_config(root, problems, warnings)
    if params is None and run_date is None and today is None:
        params, run_date, today = templating.from_environment()
    parameters = templating.load_parameters(root, problems, params, run_date, today)

    specs: dict[str, NodeSpec] = {}
    unsupported: list[UnsupportedSpec] = []
    first_file: dict[str, str] = {}
    for path in discover_node_files(root):
        label = path.relative_to(root).as_posix()
        for spec in _read_node_file(path, label, parameters, problems, warnings):
            if spec.id in first_file:
                problems.append(
                    Problem(
                        label,
                        "name",
                        f"duplicate node id {spec.id} (also in {first_file[spec.id]})",
                        "rename one of the two nodes",
                    )
                )
                continue
            first_file[spec.id] = label
            if isinstance(spec, UnsupportedSpec):
                unsupported.append(spec)
            else:
                specs[spec.id] = spec

    allow_external = bool(config.get("allow_external_paths", False))
    _check_references(specs, unsupported, problems)
    _check_paths(root, specs, allow_external, problems)
    project = Project(
        root=root,
        name=str(config.get("name") or root.name),
        nodes=specs,
        max_workers=config.get("max_workers"),
        schedules=_schedules(config, problems),
        unsupported=tuple(unsupported),
        warnings=tuple(warnings)
        + tuple(
            f"{u.file}: not supported yet: {u.what} node {u.id} (skipped)" for u in unsupported
        ),
        ttl_days=float(config.get("ttl", 7) or 7),
        allow_external_paths=allow_external,
    )
    _check_cycles(project, problems)
    _check_schedule_selections(project, config, problems)
    if problems:
        raise ProjectError(problems)
    return project


def _read_node_file(
    path: Path,
    label: str,
    parameters: templating.Parameters,
    problems: list[Problem],
    warnings: list[str],
) -> list[NodeSpec]:
    """The node(s) of one file: a YAML node with its parameters resolved, or a Python
    pipeline's nodes (reported as not supported yet)."""
    if path.suffix == ".py":
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            warnings.append(
                f"{label}: not supported yet: Python pipeline file (unreadable: {error})"
            )
            return []
        python_specs, python_warnings = parse_python_file(text, label)
        warnings.extend(python_warnings)
        return list(python_specs)

    try:
        data = load_yaml_file(path, label)
    except YamlFileError as error:
        problems.append(error.problem)
        return []
    data, template_problems = templating.resolve(data, label, parameters)
    spec, file_problems, file_warnings = parse_node(data, label)
    # NOTE: an unsupported node never runs, so its parameters need not resolve.
    if not isinstance(spec, UnsupportedSpec):
        problems.extend(template_problems)
    problems.extend(file_problems)
    warnings.extend(file_warnings)
    return [spec] if spec is not None else []


def discover_node_files(root: Path) -> list[Path]:
    """Node files: YAML (and Python pipelines, `*.py`) under `seeknal/` except `seeknal/common/`,
    else the root's own YAML files."""
    folder = root / "seeknal"
    if folder.is_dir():
        found = [
            p
            for pattern in ("*.yml", "*.yaml", "*.py")
            for p in folder.rglob(pattern)
            if "common" not in p.relative_to(folder).parts[:1]
            and p.is_file()
            and p.name != "__init__.py"
            and "__pycache__" not in p.parts
        ]
    else:
        found = [
            p
            for pattern in ("*.yml", "*.yaml")
            for p in root.glob(pattern)
            if not _NOT_NODE_FILES.match(p.name) and p.is_file()
        ]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _read_config(root: Path, problems: list[Problem], warnings: list[str]) -> dict:
    try:
        config = load_yaml_file(root / PROJECT_FILE, PROJECT_FILE)
    except YamlFileError as error:
        problems.append(error.problem)
        return {}
    if config is None:
        config = {}
    if not isinstance(config, dict):
        problems.append(
            Problem(
                PROJECT_FILE,
                "",
                "expected a mapping of settings",
                "write `name: my_project` at the top level",
            )
        )
        return {}
    if not isinstance(config.get("name"), str) or not config["name"].strip():
        problems.append(
            Problem(PROJECT_FILE, "name", "required key is missing", "add `name: my_project`")
        )
    workers = config.get("max_workers")
    if workers is not None and (
        not isinstance(workers, int) or isinstance(workers, bool) or workers < 1
    ):
        problems.append(
            Problem(
                PROJECT_FILE,
                "max_workers",
                f"expected a positive whole number, found {workers!r}",
                "write `max_workers: 4` or remove the key",
            )
        )
        config["max_workers"] = None
    ttl = config.get("ttl")
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or ttl <= 0):
        problems.append(
            Problem(
                PROJECT_FILE, "ttl", f"expected a number of days, found {ttl!r}", "write `ttl: 7`"
            )
        )
        config["ttl"] = None
    external = config.get("allow_external_paths")
    if external is not None and not isinstance(external, bool):
        # NOTE: `no` stays the text "no" (see yaml_io), which bool() would read as true.
        problems.append(
            Problem(
                PROJECT_FILE,
                "allow_external_paths",
                f"expected true or false, found {external!r}",
                "write `allow_external_paths: true` or `allow_external_paths: false`",
            )
        )
        config["allow_external_paths"] = False
    unknown = sorted(str(k) for k in config if k not in _KNOWN_KEYS | _IGNORED_KEYS)
    if unknown:
        warnings.append(f"{PROJECT_FILE}: unknown key(s) ignored: {', '.join(unknown)}")
    return config


def _schedules(config: Mapping, problems: list[Problem]) -> tuple[Schedule, ...]:
    raw = config.get("schedules") or []
    if not isinstance(raw, list):
        problems.append(
            Problem(
                PROJECT_FILE,
                "schedules",
                "expected a list of schedules",
                "write `schedules: [{name: nightly, cron: '0 2 * * *'}]`",
            )
        )
        return ()
    result = []
    for index, entry in enumerate(raw):
        key = f"schedules[{index}]"
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("cron"), str)
        ):
            problems.append(
                Problem(
                    PROJECT_FILE,
                    key,
                    "a schedule needs `name` and `cron`",
                    "write `- {name: nightly, cron: '0 2 * * *'}`",
                )
            )
            continue
        problems.extend(_schedule_problems(key, entry, [s.name for s in result]))
        result.append(
            Schedule(
                entry["name"], entry["cron"], _select_terms(entry), str(entry.get("env") or "prod")
            )
        )
    return tuple(result)


def _select_terms(entry: Mapping) -> tuple[str, ...]:
    select = entry.get("select") or ()
    if isinstance(select, str):
        return (select,)
    if isinstance(select, list) and all(isinstance(term, str) for term in select):
        return tuple(select)
    return ()


def _schedule_problems(key: str, entry: Mapping, earlier: list[str]) -> list[Problem]:
    """What is wrong with one schedule on its own: keys, name, cron, select's form, env."""
    found: list[Problem] = []
    for unknown in sorted(str(k) for k in entry if k not in _SCHEDULE_KEYS):
        found.append(
            Problem(
                PROJECT_FILE,
                f"{key}.{unknown}",
                f"unknown schedule key{did_you_mean(unknown, sorted(_SCHEDULE_KEYS))}",
                f"use only {', '.join(sorted(_SCHEDULE_KEYS))}",
            )
        )
    name = entry["name"]
    if not NAME_PATTERN.match(name):
        found.append(
            Problem(
                PROJECT_FILE,
                f"{key}.name",
                f"invalid schedule name {name!r}",
                "use letters, digits and '_', not starting with a digit (e.g. nightly_refresh)",
            )
        )
    elif name in earlier:
        found.append(
            Problem(
                PROJECT_FILE,
                f"{key}.name",
                f"duplicate schedule name {name!r}",
                "give every schedule a name of its own",
            )
        )
    cron_error = cron_problem(entry["cron"])
    if cron_error:
        found.append(
            Problem(
                PROJECT_FILE,
                f"{key}.cron",
                f"invalid cron {entry['cron']!r}: {cron_error}",
                "write five fields, minute hour day-of-month month day-of-week, e.g. "
                "'0 2 * * *' (daily at 02:00 UTC), or @hourly, @daily, @weekly, @monthly",
            )
        )
    select = entry.get("select")
    if select is not None and not _select_terms(entry) and select not in ("", []):
        found.append(
            Problem(
                PROJECT_FILE,
                f"{key}.select",
                f"expected a selection or a list of them, found {select!r}",
                "write e.g. `select: [+txn_features, tag:training]`",
            )
        )
    env = entry.get("env")
    if env is not None and (not isinstance(env, str) or not ENV_NAME_PATTERN.match(env)):
        found.append(
            Problem(
                PROJECT_FILE,
                f"{key}.env",
                f"invalid environment name {env!r}",
                "use prod or 1-63 lower-case letters, digits, '-' or '_' (e.g. dev)",
            )
        )
    return found


_CRON_ALIASES = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan feb mar apr may jun jul aug sep oct nov dec").split()),
    ("day of week", 0, 7, "sun mon tue wed thu fri sat".split()),
)
_CRON_ITEM = re.compile(r"^(?:(\*)|(\w+)(?:-(\w+))?)(?:/(\d+))?$")


def cron_problem(cron: str) -> str | None:
    """What makes `cron` an invalid schedule, or None when it is valid.

    The grammar is the standard five fields (numbers, names of months and weekdays, `*`, `?`,
    ranges, lists and steps) and the @-aliases: a subset of what Dagster accepts, checked without
    importing Dagster, so that loading a project stays fast.
    """
    text = cron.strip()
    if text.startswith("@"):
        return None if text.lower() in _CRON_ALIASES else f"unknown alias {text}"
    fields = text.split()
    if len(fields) != 5:
        return f"expected 5 fields, found {len(fields)}"
    values: list[set[int]] = []
    for field, (label, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        allowed: set[int] = set()
        for item in field.split(","):
            if item == "?" and label.startswith("day of"):
                item = "*"
            match = _CRON_ITEM.match(item)
            if not match:
                return f"cannot read {label} {item!r} (L, W and # are not supported)"
            star, first, last, step = match.groups()
            bounds = []
            for part in (first, last):
                if part is None:
                    continue
                number = _cron_value(part, low, names)
                if number is None:
                    return f"cannot read {label} {part!r} (L, W and # are not supported)"
                if not low <= number <= high:
                    return f"{label} {part!r} is not in {low}-{high}"
                bounds.append(number)
            if step is not None and int(step) == 0:
                return f"{label} step 0 in {item!r}"
            start, stop = (low, high) if star else (bounds[0], bounds[-1])
            if start > stop:
                return f"{label} range {item!r} runs backwards"
            if step is not None and not star and last is None:
                stop = high
            allowed.update(range(start, stop + 1, int(step or 1)))
        values.append(allowed)
    if values[3] == {2} and values[2] <= {30, 31}:
        return "February has no day 30 or 31, so it would never run"
    return None


def _cron_value(part: str, low: int, names: list[str]) -> int | None:
    if part.isdigit():
        return int(part)
    lowered = part.lower()
    # Month names count from 1 (jan), weekday names from 0 (sun).
    return names.index(lowered) + low if lowered in names else None


def _check_schedule_selections(project: Project, config: Mapping, problems: list[Problem]) -> None:
    """Every term of every schedule's `select` must match a node."""
    raw = config.get("schedules")
    if not isinstance(raw, list):
        return
    tags = {node_id: spec.tags for node_id, spec in project.nodes.items()}
    for index, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            continue
        for term in _select_terms(entry):
            try:
                select_nodes(project.graph, [term], tags)
            except SelectionError as error:
                message = str(error).split(". Fix: ")[0].replace("--select ", "select term ", 1)
                problems.append(
                    Problem(
                        PROJECT_FILE,
                        f"schedules[{index}].select",
                        message,
                        "use a node name, kind.name, +name, name+, tag:x or kind:source",
                    )
                )


def _check_references(
    specs: Mapping[str, NodeSpec], unsupported: list[UnsupportedSpec], problems: list[Problem]
) -> None:
    unsupported_ids = {u.id: u for u in unsupported}
    known = sorted(specs)
    for spec in specs.values():
        for ref in spec.inputs:
            problem = _input_problem(spec, ref, specs, unsupported_ids, known)
            if problem:
                problems.append(problem)
        for key, sql in _sql_texts(spec):
            for ref in sqlmod.references(sql):
                if ref not in spec.inputs:
                    problems.append(_sql_problem(spec, key, ref, specs, unsupported_ids, known))


def _input_problem(
    spec: NodeSpec,
    ref: str,
    specs: Mapping[str, NodeSpec],
    unsupported_ids: Mapping[str, UnsupportedSpec],
    known: list[str],
) -> Problem | None:
    key = "inputs"
    if ref in unsupported_ids:
        other = unsupported_ids[ref]
        return Problem(
            spec.file,
            key,
            f"{spec.id} depends on {ref} ({other.file}), a {other.what} node, which is not "
            "supported yet",
            f"remove the input or replace {ref} with a supported node",
        )
    if ref not in specs:
        return Problem(
            spec.file,
            key,
            f"unknown node {ref!r}{did_you_mean(ref, known)}",
            "reference an existing node as `kind.name`",
        )
    if ref == spec.id:
        return Problem(
            spec.file, key, f"{spec.id} lists itself as an input", "remove it from inputs"
        )
    if isinstance(specs[ref], RuleSpec):
        checked = specs[ref].inputs[0] if specs[ref].inputs else "the checked node"
        found = f"{spec.id} reads {ref}, but a rule produces no table"
        if isinstance(spec, RuleSpec):
            found = f"{spec.id} checks {ref}, but a rule cannot check another rule"
        return Problem(spec.file, key, found, f"read {checked} instead of {ref}")
    if isinstance(spec, RuleSpec) and not isinstance(specs[ref], ProfileSpec):
        if any(check.type == "profile_check" for check in spec.checks):
            return Problem(
                spec.file,
                key,
                f"a profile_check rule checks a profile, but {ref} is a {specs[ref].kind}",
                f"add a `kind: profile` node with `inputs: [{{ref: {ref}}}]` and check that",
            )
    return None


def _sql_texts(spec: NodeSpec) -> list[tuple[str, str]]:
    """Each piece of SQL a node holds, with the key it is written under."""
    if isinstance(spec, RuleSpec):
        return [("rule.params.sql", check.sql) for check in spec.checks if check.sql]
    return [("transform", spec.sql)] if spec.sql else []


def _sql_problem(
    spec: NodeSpec,
    key: str,
    ref: str,
    specs: Mapping[str, NodeSpec],
    unsupported_ids: Mapping[str, UnsupportedSpec],
    known: list[str],
) -> Problem:
    if ref in unsupported_ids:
        return Problem(
            spec.file,
            key,
            f"the SQL reads {ref}, a {unsupported_ids[ref].what} node, which is not supported yet",
            f"read a supported node instead of {ref}",
        )
    if ref not in specs:
        return Problem(
            spec.file,
            key,
            f"the SQL reads unknown node {ref!r}{did_you_mean(ref, known)}",
            "correct the table name or add the node",
        )
    if isinstance(spec, RuleSpec):
        return Problem(
            spec.file,
            key,
            f"the assertion reads {ref}, but a rule can only read the node it checks",
            f"read {spec.inputs[0]} only" if spec.inputs else f"check {ref} with its own rule",
        )
    return Problem(
        spec.file,
        key,
        f"the SQL reads {ref}, which is not listed in inputs",
        f"add `- ref: {ref}` under inputs",
    )


def _check_paths(
    root: Path, specs: Mapping[str, NodeSpec], allow_external: bool, problems: list[Problem]
) -> None:
    owners: dict[Path, str] = {}  # every file a node reads or writes -> that node's id
    for spec in specs.values():
        if isinstance(spec, SourceSpec) and spec.path:
            key = "table"
            path = _safe_path(root, spec.path, allow_external, spec.file, key, problems)
            if path is not None and not path.is_file():
                problems.append(
                    Problem(
                        spec.file,
                        key,
                        f"data file not found: {spec.path}",
                        "create the file (for the example: run generate_data.py) "
                        "or correct the path, which is relative to the project root",
                    )
                )
            if path is not None:
                owners.setdefault(path.resolve(), spec.id)
    for spec in specs.values():
        if isinstance(spec, ExposureSpec) and spec.path:
            path = _safe_path(root, spec.path, allow_external, spec.file, "path", problems)
            if path is not None:
                _check_export_path(root, spec, path.resolve(), owners, problems)


def _check_export_path(
    root: Path, spec: ExposureSpec, path: Path, owners: dict[Path, str], problems: list[Problem]
) -> None:
    """An export may not overwrite a source's data, another export, or seeknal's own state."""
    other = owners.setdefault(path, spec.id)
    if other != spec.id:
        what = "the data file of" if other.startswith("source.") else "the export of"
        problems.append(
            Problem(
                spec.file,
                "path",
                f"{spec.id} would overwrite {what} {other} ({spec.path})",
                "write the export to a path of its own",
            )
        )
    elif path.is_relative_to(root / "target"):
        problems.append(
            Problem(
                spec.file,
                "path",
                f"{spec.path!r} is inside target/, which seeknal manages",
                "write the export outside target/, e.g. `path: output/name.parquet`",
            )
        )


def _safe_path(
    root: Path, relative: str, allow_external: bool, file: str, key: str, problems: list[Problem]
) -> Path | None:
    if any(c in relative for c in ("\0", "\n")):
        problems.append(
            Problem(
                file,
                key,
                f"path contains a control character: {relative!r}",
                "use a plain file path",
            )
        )
        return None
    path = Path(relative)
    if path.is_absolute():
        if not allow_external:
            problems.append(
                Problem(
                    file,
                    key,
                    f"absolute path {relative!r}: node paths are relative to the project root",
                    "write the path relative to the project root, or set "
                    "`allow_external_paths: true` in seeknal_project.yml",
                )
            )
            return None
        return path
    resolved = (root / path).resolve()
    if not resolved.is_relative_to(root) and not allow_external:
        problems.append(
            Problem(
                file,
                key,
                f"path {relative!r} leads outside the project (to {resolved})",
                "keep data inside the project folder, or set "
                "`allow_external_paths: true` in seeknal_project.yml",
            )
        )
        return None
    return root / path


def _check_cycles(project: Project, problems: list[Problem]) -> None:
    # NOTE: a node listing itself is already reported by `_check_references`.
    graph = Graph(
        {
            node_id: tuple(r for r in spec.inputs if r != node_id)
            for node_id, spec in project.nodes.items()
        }
    )
    cycle = graph.find_cycle()
    if cycle:
        first = project.nodes[cycle[0]]
        problems.append(
            Problem(
                first.file,
                "inputs",
                f"dependency cycle: {' -> '.join(cycle)}",
                "remove one of these inputs to break the cycle",
            )
        )
