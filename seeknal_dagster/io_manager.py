"""Hands a YAML node's current output to Python assets downstream of it.

A node writes its own output (a parquet snapshot) and records it in its environment's pointer
file, so this IO manager stores nothing; it only reads: the snapshot the pointer file of the run's
environment names, as the receiving parameter is annotated.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import dagster as dg

from seeknal_dagster.storage import PROD, Store


class SeeknalIOManager(dg.ConfigurableIOManager):
    """Loads a node's output for the run's environment (partition key; `prod` when the
    downstream asset is not partitioned by environment).

    The parameter's annotation picks the type: `pandas.DataFrame` (also the default),
    `pyarrow.Table`, or `pathlib.Path` for the parquet file itself.
    """

    project_dir: str

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        raise dg.DagsterInvariantViolationError(
            f"{context.asset_key.to_user_string()} returned a value to the seeknal IO manager, "
            "which only reads the outputs of YAML nodes. Fix: give the asset another "
            "io_manager_key (e.g. Dagster's default `io_manager`)"
        )

    def load_input(self, context: dg.InputContext) -> Any:
        node_id = ".".join(context.asset_key.path)
        env = _environment(context)
        store = Store(Path(self.project_dir) / "target")
        pointer = store.read_state(env).pointers.get(node_id)
        if pointer is None:
            raise dg.Failure(
                description=(
                    f"{node_id} has no output in environment '{env}'. Fix: materialise it "
                    f"first (e.g. `seeknal run --select +{node_id}`)"
                )
            )
        path = store.target / pointer.snapshot
        context.log.debug("loading %s from %s (%s)", node_id, path, env)
        return _read(path, context.dagster_type.typing_type, node_id)


def _environment(context: dg.InputContext) -> str:
    if not context.has_asset_partitions:
        return PROD
    keys = list(context.asset_partition_keys)
    if len(keys) == 1:
        return keys[0]
    # An asset that is not partitioned by environment sees every environment upstream; it reads
    # production.
    if PROD in keys:
        return PROD
    raise dg.Failure(
        description=(
            f"{context.asset_key.to_user_string()}: cannot tell which environment to read from "
            f"{keys}. Fix: partition the downstream asset with seeknal's ENV_PARTITIONS"
        )
    )


def _read(path: Path, annotation: Any, node_id: str) -> Any:
    import pyarrow.parquet as pq

    if annotation is Path:
        return path
    if _is(annotation, "pyarrow", "Table"):
        return pq.read_table(path)
    if annotation in (Any, object, None) or _is(annotation, "pandas", "DataFrame"):
        try:
            import pandas  # noqa: F401
        except ImportError:
            raise dg.Failure(
                description=(
                    f"reading {node_id} as a pandas DataFrame needs pandas. Fix: `pip install "
                    "pandas`, or annotate the parameter as pyarrow.Table"
                )
            ) from None
        return pq.read_table(path).to_pandas()
    raise dg.Failure(
        description=(
            f"cannot load {node_id} as {annotation!r}. Fix: annotate the parameter as "
            "pandas.DataFrame, pyarrow.Table or pathlib.Path"
        )
    )


def _is(annotation: Any, module: str, name: str) -> bool:
    """True when `annotation` is the class `module.name` (without importing that module)."""
    annotation = typing.get_origin(annotation) or annotation
    return (
        isinstance(annotation, type)
        and annotation.__name__ == name
        and annotation.__module__.split(".")[0] == module
    )
