"""The analysis wing: records as pandas DataFrames, findings, tables, figures, compare, report, dashboard.

Imports harness.jobs (records on disk, W&B naming) and harness.core's JAX-free modules; never JAX.
"""
