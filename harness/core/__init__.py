"""The core wing: one run, config in and plain data out (the config schema, components, JAX program, timing).

Imports nothing from harness.jobs or harness.analysis. Its config, fields and metrics
modules import no JAX, so the other wings can read them cheaply.
"""
