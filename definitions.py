"""Dagster entry point: `defs` for the Seeknal project in $SEEKNAL_PROJECT_DIR.

Without that variable it loads the bundled example, examples/fraud_detection. `workspace.yaml`
points `dagster dev` here.
"""

from seeknal_dagster.dagster_defs import definitions_for_workspace

defs = definitions_for_workspace()
