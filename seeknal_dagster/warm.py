"""Imported by the forkserver of a `--parallel` run before it forks step processes.

It builds the run's job once (project loading, fingerprints, definitions), so each step process
starts with it cached instead of rebuilding it. The runner names the project in
$SEEKNAL_WARM_ROOT; without it, or if building fails, importing this does nothing and each step
builds the job itself as usual.
"""

import logging
import os

from seeknal_dagster.dagster_defs import run_job

_root = os.environ.get("SEEKNAL_WARM_ROOT")
if _root:
    try:
        run_job(_root)
    except Exception:  # the step will rebuild the job and report any error properly
        logging.getLogger(__name__).debug("could not build the job ahead", exc_info=True)
