"""Glue for Snakemake's ``script:`` directive: logging to the rule's log, clear errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from covidct.errors import CovidctError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def run_step(snakemake: Any, step: Callable[..., Any], **kwargs: Any) -> Any:
    """Run ``step(**kwargs)`` with logging into the rule's log file.

    A ``CovidctError`` (bad input: it names the patient, the file and the problem)
    is written to the log and to stderr, and the job exits with status 1 so that
    Snakemake stops this patient and, with ``--keep-going``, goes on with others.

    Args:
        snakemake: The object Snakemake injects into scripts.
        step: A function of ``covidct.steps``.
        **kwargs: Its arguments.

    Returns:
        What ``step`` returns.
    """
    logging.basicConfig(filename=snakemake.log[0], filemode="w", level=logging.INFO, format=LOG_FORMAT, force=True)
    try:
        return step(**kwargs)
    except CovidctError as exc:
        logging.getLogger("covidct").error("%s", exc)
        print(f"covidct error in rule {snakemake.rule}: {exc}", file=sys.stderr)
        sys.exit(1)
