"""seeknal-dagster: Seeknal YAML feature pipelines as Dagster assets."""

__version__ = "0.1.0"
