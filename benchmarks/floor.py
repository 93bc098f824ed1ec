"""The floor: a project's SQL run directly in one DuckDB connection, with no orchestration.

Run as a script (the harness starts it in a subprocess so its memory is measured like a
`seeknal` command's)::

    python benchmarks/floor.py --project DIR --out DIR

Each node runs in topological order through `seeknal_dagster.engine.execute_node`, the function
every Dagster step calls, on one shared connection: the SQL, the DuckDB settings and the parquet
writer are the engine's, so the floor follows any change to them. Outputs already written are
read back as views over their parquet files, exactly as a step reads its inputs. What the floor
leaves out is everything around that call: Dagster, fingerprints, pointer files, checksums, links.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seeknal_dagster import engine
from seeknal_dagster.project import Project, load_project
from seeknal_dagster.specs import ExposureSpec, RuleSpec, SourceSpec


def run_floor(project: Project, out_dir: Path) -> None:
    """Executes every node of `project`, then its rule checks, writing outputs under `out_dir`.

    Raises:
        ExecutionError: a node or a check failed.
    """
    outputs: dict[str, Path] = {}
    con = engine.connect()
    try:
        for node_id in project.graph.topological_order:
            spec = project.nodes[node_id]
            if isinstance(spec, RuleSpec):
                continue
            out_path = out_dir / "nodes" / spec.kind / f"{spec.name}.parquet"
            data_path = project.resolve_path(spec.path) if isinstance(spec, SourceSpec) else None
            engine.execute_node(
                con,
                spec,
                {ref: outputs[ref] for ref in spec.inputs},
                {ref: project.nodes[ref] for ref in spec.inputs},
                out_path,
                data_path,
            )
            if isinstance(spec, ExposureSpec):
                destination = out_dir / "exports" / Path(spec.path.lstrip("/"))
                engine.export(con, out_path, spec.format, destination)
            outputs[node_id] = out_path

        for spec in project.nodes.values():
            if isinstance(spec, RuleSpec):
                for check in spec.checks:
                    engine.run_check(con, check, spec.target, outputs[spec.target])
    finally:
        con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True, help="project folder")
    parser.add_argument("--out", type=Path, required=True, help="folder for the outputs")
    args = parser.parse_args(argv)
    run_floor(load_project(args.project), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
