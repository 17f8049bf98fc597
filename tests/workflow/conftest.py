"""Fixtures of the workflow tests: the tiny cohort, run once per session (``tiny_cohort``)."""

from tiny_cohort import tiny_rerun, tiny_run  # noqa: F401 (fixtures)
