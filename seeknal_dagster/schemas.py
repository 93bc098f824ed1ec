"""The output columns of every node, derived before anything runs.

Sources are read from their file's header (or taken from the last build when the source is
unchanged); SQL nodes are analysed with `sql.output_columns` against their inputs' columns;
feature groups and exposures follow the same rules as the engine. A node whose columns cannot be
derived gets None and a reason, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from seeknal_dagster import sql as sqlmod
from seeknal_dagster.errors import SeeknalError
from seeknal_dagster.project import Project
from seeknal_dagster.specs import (
    ExposureSpec,
    FeatureGroupSpec,
    NodeSpec,
    ProfileSpec,
    RuleSpec,
    SourceSpec,
    TransformSpec,
)

Columns = list[tuple[str, str | None]]


@dataclass
class Schemas:
    """Columns per node (None = unknown) and, for unknown ones, why."""

    columns: dict[str, Columns | None] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)


def derive(
    project: Project,
    known: Mapping[str, Columns] | None = None,
    only: set[str] | None = None,
) -> Schemas:
    """Output columns of nodes, in topological order.

    Args:
        project: the validated project.
        known: columns of nodes whose current output is already built (same fingerprint); used
            instead of reading a source file or analysing SQL again.
        only: derive just these nodes (and what they need); None means every node.
    """
    known = known or {}
    wanted = None if only is None else only | project.graph.upstream(only)
    result = Schemas()
    for node_id in project.graph.topological_order:
        spec = project.nodes[node_id]
        if isinstance(spec, RuleSpec) or (wanted is not None and node_id not in wanted):
            continue
        if node_id in known:
            result.columns[node_id] = list(known[node_id])
            continue
        try:
            result.columns[node_id] = node_columns(project, spec, result.columns)
        except SeeknalError as error:
            result.columns[node_id] = None
            result.unknown[node_id] = str(error)
    return result


def node_columns(project: Project, spec: NodeSpec, done: Mapping[str, Columns | None]) -> Columns:
    """One node's output columns, given its inputs' columns (`done`).

    Raises:
        SeeknalError: an input's columns are unknown or the SQL cannot be analysed.
    """
    if isinstance(spec, SourceSpec):
        from seeknal_dagster.engine import source_columns

        return [(n, t) for n, t in source_columns(spec, project.resolve_path(spec.path))]
    if isinstance(spec, ProfileSpec):
        from seeknal_dagster.engine import PROFILE_COLUMNS

        return [(name, type_name) for name, type_name in PROFILE_COLUMNS]

    inputs: dict[str, Columns] = {}
    for ref in spec.inputs:
        columns = done.get(ref)
        if columns is None:
            raise SeeknalError(f"the columns of input {ref} are unknown")
        inputs[ref] = columns

    if spec.sql:
        base = sqlmod.output_columns(spec.sql, inputs)
    elif isinstance(spec, TransformSpec):
        raise SeeknalError("a transform needs SQL")
    elif len(spec.inputs) == 1:
        base = list(inputs[spec.inputs[0]])
    elif isinstance(spec, ExposureSpec):
        base = _training_columns(project, spec, inputs)
    else:
        assert isinstance(spec, FeatureGroupSpec)
        base = _key_join_columns(spec, inputs)

    if isinstance(spec, FeatureGroupSpec):
        return _feature_group_columns(spec, base)
    return base


def _key_join_columns(spec: FeatureGroupSpec, inputs: Mapping[str, Columns]) -> Columns:
    seen: set[str] = set()
    result: Columns = []
    for ref in spec.inputs:
        for name, type_name in inputs[ref]:
            if name not in seen:
                seen.add(name)
                result.append((name, type_name))
    return result


def _training_columns(
    project: Project, spec: ExposureSpec, inputs: Mapping[str, Columns]
) -> Columns:
    """The training join's columns: the base's, then each feature group's (as the engine)."""
    result = list(inputs[spec.inputs[0]])
    taken = {name for name, _ in result}
    base_spec = project.nodes[spec.inputs[0]]
    base_time = base_spec.event_time_col if isinstance(base_spec, FeatureGroupSpec) else None
    for ref in spec.inputs[1:]:
        other = project.nodes[ref]
        if not isinstance(other, FeatureGroupSpec):
            raise SeeknalError(f"{ref} is not a feature group; the join needs a transform")
        types = dict(inputs[ref])
        as_of = bool(base_time and other.event_time_col)
        joined = other.joined_names([name for name, _ in inputs[ref]], taken, as_of)
        result += [(final, types[name]) for name, final in joined]
    return result


def _feature_group_columns(spec: FeatureGroupSpec, base: Columns) -> Columns:
    available = dict(base)
    wanted = spec.output_names([name for name, _ in base])
    declared = {f.name: f.type for f in spec.features or () if f.type}
    missing = [name for name in wanted if name not in available]
    if missing:
        raise SeeknalError(f"column(s) {', '.join(missing)} not in the feature group's input")
    return [(name, declared.get(name) or available[name]) for name in wanted]
