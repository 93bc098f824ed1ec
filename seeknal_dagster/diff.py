"""Change categories: a pure comparison of two manifests (baseline and current), no I/O.

Each node gets at most one category (the most severe of its changes) with its reasons; BREAKING
changes also say which downstream nodes read the affected columns. Unchanged nodes downstream of
a change are DEPENDENT. See SPEC section 5 for the rules this implements.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from seeknal_dagster import sql as sqlmod
from seeknal_dagster.errors import SeeknalError

NEW, REMOVED = "NEW", "REMOVED"
BREAKING, NON_BREAKING, METADATA, DEPENDENT = "BREAKING", "NON_BREAKING", "METADATA", "DEPENDENT"
CATEGORY_ORDER = (BREAKING, NON_BREAKING, NEW, REMOVED, METADATA, DEPENDENT)
EXECUTED = (NEW, NON_BREAKING, BREAKING, DEPENDENT)
_SEVERITY = {METADATA: 1, NON_BREAKING: 2, BREAKING: 3}

Entry = Mapping[str, Any]


@dataclass(frozen=True)
class Change:
    """How one node differs from the baseline."""

    node: str
    category: str
    reasons: tuple[str, ...]
    impact: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "node": self.node,
            "category": self.category,
            "reasons": list(self.reasons),
        }
        if self.impact:
            document["impact"] = list(self.impact)
        return document


def categorise(baseline: Mapping[str, Entry], current: Mapping[str, Entry]) -> list[Change]:
    """Compares every node of `current` with `baseline`.

    Args:
        baseline: node id -> manifest entry of what the baseline environment last built.
        current: node id -> manifest entry of the project now, in topological order.

    Returns:
        One change per node that differs (unchanged nodes are absent), in `current`'s order
        followed by removed nodes.
    """
    changes: dict[str, Change] = {}
    column_notes: dict[str, list[str]] = {}
    for node_id, entry in current.items():
        old = baseline.get(node_id)
        if old is None:
            changes[node_id] = Change(node_id, NEW, ("new node",))
            continue
        found = _compare(old, entry)
        own_change = old.get("definition") != entry.get("definition") or _inputs_differ(old, entry)
        data_changed = entry.get("kind") == "source" and old.get("fingerprint") != entry.get(
            "fingerprint"
        )
        columns = _column_changes(old, entry, detect_rename=own_change and bool(entry.get("sql")))
        if own_change or data_changed:
            found += columns
            if not any(category != METADATA for category, _ in found):
                found.append(
                    (NON_BREAKING, "definition changed" if own_change else "data file changed")
                )
        else:
            # Output columns that move only because an input moved: the node itself did not
            # change, so it is DEPENDENT; the column facts go with that.
            column_notes[node_id] = [reason for _, reason in columns]
        if found:
            category = max(found, key=lambda item: _SEVERITY[item[0]])[0]
            reasons = tuple(reason for _, reason in found)
            changes[node_id] = Change(node_id, category, reasons)

    _add_dependents(current, changes, column_notes)
    for node_id, change in list(changes.items()):
        if change.category == BREAKING:
            impact = _impact(node_id, baseline[node_id], current)
            changes[node_id] = Change(node_id, BREAKING, change.reasons, impact)
    removed = [Change(n, REMOVED, ("node removed",)) for n in baseline if n not in current]
    return [changes[n] for n in current if n in changes] + removed


def _compare(old: Entry, new: Entry) -> list[tuple[str, str]]:
    """(category, reason) for every difference of a node's own definition and metadata."""
    found: list[tuple[str, str]] = []
    for key, label in (("description", "description"), ("owner", "owner"), ("tags", "tags")):
        if (old.get(key) or None) != (new.get(key) or None):
            found.append((METADATA, f"{label} changed"))
    old_docs = old.get("column_descriptions") or {}
    new_docs = new.get("column_descriptions") or {}
    if any(old_docs.get(c) != new_docs.get(c) for c in set(old_docs) & set(new_docs)) or any(
        old_docs.get(c)
        for c in set(old_docs) - set(new_docs)
        if c in {str(col[0]) for col in new.get("columns") or []}
    ):
        found.append((METADATA, "column descriptions changed"))

    old_def, new_def = old.get("definition", {}), new.get("definition", {})
    if old_def.get("sql") == new_def.get("sql") and (old.get("sql") or "") != (
        new.get("sql") or ""
    ):
        found.append((METADATA, "SQL reformatted (same logic)"))

    found += _input_changes(old, new)
    found += _definition_changes(new.get("kind", ""), old_def, new_def)
    return found


def _joins_by_position(entry: Entry) -> bool:
    """Whether the order of `inputs` shapes the output: a feature group or exposure that joins
    several inputs itself (the first input is the base)."""
    return (
        entry.get("kind") in ("feature_group", "exposure")
        and not entry.get("definition", {}).get("sql")
        and len(entry.get("inputs", [])) > 1
    )


def _inputs_differ(old: Entry, new: Entry) -> bool:
    old_inputs, new_inputs = list(old.get("inputs", [])), list(new.get("inputs", []))
    if _joins_by_position(new):
        return old_inputs != new_inputs
    # NOTE: SQL names its inputs itself, so listing them in another order changes nothing.
    return set(old_inputs) != set(new_inputs)


def _input_changes(old: Entry, new: Entry) -> list[tuple[str, str]]:
    old_inputs, new_inputs = list(old.get("inputs", [])), list(new.get("inputs", []))
    found = [(BREAKING, f"input removed: {i}") for i in old_inputs if i not in new_inputs]
    found += [(NON_BREAKING, f"input added: {i}") for i in new_inputs if i not in old_inputs]
    kept_old = [i for i in old_inputs if i in new_inputs]
    kept_new = [i for i in new_inputs if i in old_inputs]
    if kept_old != kept_new and _joins_by_position(new):
        found.append(
            (
                NON_BREAKING,
                f"input order changed: {', '.join(kept_old)} -> {', '.join(kept_new)} "
                "(the first input is the base of the join)",
            )
        )
    return found


def _definition_changes(kind: str, old: Entry, new: Entry) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    if old.get("sql") != new.get("sql"):
        if old.get("sql") is None:
            found.append((NON_BREAKING, "transform SQL added"))
        elif new.get("sql") is None:
            found.append((NON_BREAKING, "transform SQL removed"))
        else:
            found.append((NON_BREAKING, "SQL logic changed"))
    if kind == "source":
        if old.get("format") != new.get("format"):
            found.append(
                (BREAKING, f"source format changed: {old.get('format')} -> {new.get('format')}")
            )
        if old.get("path") != new.get("path"):
            found.append(
                (NON_BREAKING, f"source file path changed: {old.get('path')} -> {new.get('path')}")
            )
        old_options, new_options = old.get("options") or {}, new.get("options") or {}
        changed = sorted(
            k for k in {*old_options, *new_options} if old_options.get(k) != new_options.get(k)
        )
        if changed:
            found.append((NON_BREAKING, f"params changed: {', '.join(changed)}"))
    elif kind == "feature_group":
        if "entity" in old and "entity" in new and old["entity"] != new["entity"]:
            found.append((BREAKING, f"entity changed: {old['entity']} -> {new['entity']}"))
        if old.get("join_keys") != new.get("join_keys"):
            keys = (", ".join(old.get("join_keys") or []), ", ".join(new.get("join_keys") or []))
            found.append((BREAKING, f"join keys changed: {keys[0]} -> {keys[1]}"))
        if old.get("event_time_col") != new.get("event_time_col"):
            found.append(
                (
                    BREAKING,
                    f"event time column changed: {old.get('event_time_col') or '(none)'} -> "
                    f"{new.get('event_time_col') or '(none)'}",
                )
            )
        for section in ("offline", "online"):
            if old.get(section) != new.get(section):
                found.append((NON_BREAKING, f"materialization changed ({section})"))
    elif kind == "exposure":
        for key in ("type", "path", "format"):
            if old.get(key) != new.get(key):
                found.append(
                    (NON_BREAKING, f"export {key} changed: {old.get(key)} -> {new.get(key)}")
                )
    elif kind == "rule" and old.get("checks") != new.get("checks"):
        found.append((NON_BREAKING, "rule changed"))
    return found


def _feature_names(entry: Entry) -> set[str]:
    features = entry.get("definition", {}).get("features") or []
    return {str(feature[0]) for feature in features}


def _column_map(entry: Entry) -> dict[str, str | None]:
    return {str(c[0]): c[1] for c in entry.get("columns") or []}


def _type_name(type_name: str | None) -> str:
    return type_name.lower() if type_name else "not inferred"


def _column_changes(old: Entry, new: Entry, detect_rename: bool) -> list[tuple[str, str]]:
    """(category, reason) for every difference of two nodes' output columns."""
    if old.get("columns") is None or new.get("columns") is None:
        if old.get("columns") != new.get("columns") and new.get("kind") != "rule":
            return [
                (NON_BREAKING, "output columns could not be derived, so column changes are unknown")
            ]
        return []
    old_map, new_map = _column_map(old), _column_map(new)
    old_features, new_features = _feature_names(old), _feature_names(new)
    removed = [c for c in old_map if c not in new_map]
    added = [c for c in new_map if c not in old_map]

    found: list[tuple[str, str]] = []
    if detect_rename and _renamed(old_map, new_map, removed, added, old_features | new_features):
        found.append((BREAKING, f"column renamed: {removed[0]} -> {added[0]}"))
        removed, added = [], []
    for column in removed:
        noun = "feature" if column in old_features else "column"
        found.append((BREAKING, f"removed {noun}: {column}"))
    for column in added:
        noun = "feature" if column in new_features else "column"
        unknown = "" if new_map[column] else " (its type cannot be inferred)"
        found.append((NON_BREAKING, f"new {noun}: {column}{unknown}"))
    for column, old_type in old_map.items():
        new_type = new_map.get(column, old_type)
        if old_type == new_type:
            continue
        if old_type and new_type:
            reason = (
                f"column type changed: {column} {_type_name(old_type)} -> {_type_name(new_type)}"
            )
            found.append((BREAKING, reason))
        elif old_type:
            found.append(
                (
                    NON_BREAKING,
                    f"type of {column} cannot be inferred any more (was {_type_name(old_type)})",
                )
            )
        else:
            found.append(
                (
                    NON_BREAKING,
                    f"type of {column} was not inferred before (now {_type_name(new_type)})",
                )
            )
    kept_old = [c for c in old_map if c in new_map]
    kept_new = [c for c in new_map if c in old_map]
    if kept_old != kept_new:
        found.append((NON_BREAKING, "column order changed"))
    if new.get("kind") == "source":
        found += _declaration_changes(old, new)
    return found


def _renamed(
    old_map: Mapping[str, str | None],
    new_map: Mapping[str, str | None],
    removed: list[str],
    added: list[str],
    features: set[str],
) -> bool:
    """Whether one column took another's place: same position, same known type, one each way.

    NOTE: this reads the columns, not the SQL, so replacing `a` with another column of the
    same type at the same place is also called a rename; the category (BREAKING) is the same.
    """
    if len(removed) != 1 or len(added) != 1 or {*removed, *added} & features:
        return False
    old_type, new_type = old_map[removed[0]], new_map[added[0]]
    same_place = list(old_map).index(removed[0]) == list(new_map).index(added[0])
    return same_place and old_type is not None and old_type == new_type


def _declaration_changes(old: Entry, new: Entry) -> list[tuple[str, str]]:
    """A source's declared columns that changed without changing its output columns."""
    old_declared = {str(c[0]): c[1] for c in old.get("definition", {}).get("columns") or []}
    new_declared = {str(c[0]): c[1] for c in new.get("definition", {}).get("columns") or []}
    old_map, new_map = _column_map(old), _column_map(new)
    found: list[tuple[str, str]] = []
    for column in old_declared:
        if (
            column not in new_declared
            and column in new_map
            and old_map.get(column) == new_map[column]
        ):
            found.append(
                (
                    NON_BREAKING,
                    f"column {column} is no longer declared; the file still has it and its type "
                    "is now detected",
                )
            )
    for column, type_name in new_declared.items():
        if (
            column not in old_declared
            and column in old_map
            and old_map[column] == new_map.get(column)
        ):
            found.append(
                (NON_BREAKING, f"column {column} is now declared as {_type_name(type_name)}")
            )
    return found


def _add_dependents(
    current: Mapping[str, Entry], changes: dict[str, Change], notes: Mapping[str, list[str]]
) -> None:
    """Marks unchanged nodes downstream of executed changes as DEPENDENT, with the root causes
    and what that does to their own columns."""
    causes: dict[str, set[str]] = {}
    for node_id, entry in current.items():
        roots: set[str] = set()
        for parent in entry.get("inputs", []):
            change = changes.get(parent)
            if change is None:
                continue
            if change.category == DEPENDENT:
                roots |= causes.get(parent, set())
            elif change.category in (NEW, NON_BREAKING, BREAKING):
                roots.add(parent)
        if not roots:
            continue
        if node_id in changes and changes[node_id].category != METADATA:
            continue
        causes[node_id] = roots
        breaking = sorted(r for r in roots if changes[r].category == BREAKING)
        other = sorted(r for r in roots if changes[r].category != BREAKING)
        reasons = [f"upstream BREAKING change: {', '.join(breaking)}"] if breaking else []
        reasons += [f"upstream changed: {', '.join(other)}"] if other else []
        if node_id in changes:  # a metadata edit below a real change still has to run
            reasons = list(changes[node_id].reasons) + reasons
        reasons += notes.get(node_id, [])
        changes[node_id] = Change(node_id, DEPENDENT, tuple(reasons))


def _impact(node_id: str, old: Entry, current: Mapping[str, Entry]) -> tuple[str, ...]:
    """For a BREAKING node: what each direct consumer does with a removed or retyped column."""
    old_map, new_map = _column_map(old), _column_map(current[node_id])
    removed = {c for c in old_map if c not in new_map}
    retyped = {
        c
        for c in old_map
        if c in new_map and old_map[c] and new_map[c] and old_map[c] != new_map[c]
    }
    if not removed and not retyped:
        return ()

    lines: list[str] = []
    for consumer, entry in current.items():
        if node_id not in entry.get("inputs", []):
            continue
        use = _use_of(entry, node_id, old, current)
        if use is None:
            lines.append(f"{consumer}: cannot tell which columns of {node_id} it reads; review it")
            continue
        reads, fails = use
        for column in sorted(reads & removed):
            if fails:
                lines.append(
                    f"{consumer} reads {node_id}.{column}, which was removed: it will fail"
                )
            else:
                lines.append(
                    f"{consumer} passes {node_id}.{column} through, which was removed: its "
                    "output loses that column"
                )
        for column in sorted(reads & retyped):
            lines.append(
                f"{consumer} reads {node_id}.{column}, whose type changed "
                f"({_type_name(old_map[column])} -> {_type_name(new_map[column])}): check it"
            )
        if not reads & (removed | retyped):
            lines.append(f"{consumer} does not read the changed columns of {node_id}")
    return tuple(lines)


def _use_of(
    consumer: Entry, node_id: str, old: Entry, current: Mapping[str, Entry]
) -> tuple[set[str], bool] | None:
    """The columns of `node_id` (as it was) that `consumer` uses, and whether the consumer fails
    now (it names a column that is gone) rather than passing columns through (`*`, no SQL).
    None when that cannot be told."""
    old_columns = _column_list(old)
    new_entry = current[node_id]
    new_columns = None if new_entry.get("columns") is None else _column_list(new_entry)
    definition = consumer.get("definition", {})
    if consumer.get("sql"):
        others = {ref: _column_list(current.get(ref, {})) for ref in consumer.get("inputs", [])}
        return _sql_use(consumer["sql"], others, node_id, old_columns, new_columns)
    if consumer.get("kind") == "rule":
        checks = definition.get("checks") or []
        named = {str(c) for check in checks for c in check.get("columns") or []}
        fails = new_columns is None or bool(named - {name for name, _ in new_columns})
        for check in checks:
            if check.get("sql"):
                use = _sql_use(check["sql"], {}, node_id, old_columns, new_columns)
                if use is None:
                    return None
                named |= use[0]
                fails = fails or use[1]
        return named, fails
    if consumer.get("kind") == "profile" and definition.get("columns") is not None:
        selected = {str(c) for c in definition["columns"]}
        return selected, new_columns is None or bool(selected - {n for n, _ in new_columns})
    if consumer.get("kind") == "feature_group" and definition.get("features") is not None:
        keys = [*(definition.get("join_keys") or []), definition.get("event_time_col")]
        return {str(f[0]) for f in definition["features"]} | {k for k in keys if k}, True
    return {name for name, _ in old_columns}, False


def _column_list(entry: Entry) -> list[tuple[str, str | None]]:
    return [(str(c[0]), c[1]) for c in entry.get("columns") or []]


def _sql_use(
    sql: str,
    others: Mapping[str, list[tuple[str, str | None]]],
    node_id: str,
    old_columns: list[tuple[str, str | None]],
    new_columns: list[tuple[str, str | None]] | None,
) -> tuple[set[str], bool] | None:
    """What SQL reads of `node_id` as it was, and whether it no longer analyses as it is now."""
    try:
        reads = sqlmod.columns_read(sql, {**others, node_id: old_columns}).get(node_id, set())
    except SeeknalError:
        return None
    if new_columns is None:
        return reads, True
    try:
        sqlmod.output_columns(sql, {**others, node_id: new_columns})
    except SeeknalError:
        return reads, True
    return reads, False
