"""Dagster entry point: `defs` for the Seeknal project in $SEEKNAL_PROJECT_DIR.

Without that variable it loads the bundled example, examples/fraud_detection. `workspace.yaml`
points `dagster dev` here. Add your own Python assets by merging them in; see the README.
"""

from seeknal_dagster.dagster_defs import seeknal_definitions

defs = seeknal_definitions()
