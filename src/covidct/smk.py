"""Glue for Snakemake's ``script:`` directive: one generic script runs every rule.

``workflow/scripts/step.py`` calls ``run_rule(snakemake)``, which calls the function of
``covidct.steps`` named after the rule with the rule's names as arguments (the contract is in
``covidct.steps``' docstring), logs into the rule's log, and turns a ``CovidctError`` (bad input:
it names the patient, the file and the problem) into one line in the log and on stderr and exit
status 1, so that Snakemake stops this job and, with ``--keep-going``, goes on with the others.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable, Iterable
from typing import Any

from covidct import steps
from covidct.errors import CovidctError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Prefix of a rule's outputs among its step's arguments.
OUTPUT_PREFIX = "out_"
#: Arguments that come from the job rather than from the rule's names.
SHEET_ARGUMENT = "sheet"
THREADS_ARGUMENT = "threads"


class ContractError(CovidctError):
    """A rule's names and its step's arguments do not match (a bug of the workflow, not of the input)."""


def step_for(rule: str) -> Callable[..., Any]:
    """The function of ``covidct.steps`` that runs ``rule``.

    Raises:
        ContractError: there is none.
    """
    step = getattr(steps, rule, None)
    if not callable(step) or rule.startswith("_"):
        raise ContractError(f"rule {rule}: covidct.steps has no function {rule}")
    return step


def _value(value: Any) -> Any:
    """A Snakemake input/output entry as a plain value: a path string, or a list of them."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Iterable) and not isinstance(value, dict):
        return [str(v) for v in value]
    return value


def rule_arguments(
    inputs: dict[str, Any], outputs: dict[str, Any], params: dict[str, Any], wildcards: dict[str, Any]
) -> dict[str, Any]:
    """The step's keyword arguments from a rule's named inputs, outputs, params and wildcards.

    Raises:
        ContractError: one name stands for two things.
    """
    kwargs: dict[str, Any] = {}
    named = [(name, _value(v)) for name, v in inputs.items()]
    named += [(OUTPUT_PREFIX + name, _value(v)) for name, v in outputs.items()]
    named += list(params.items()) + [(name, str(v)) for name, v in wildcards.items()]
    for name, value in named:
        if name in kwargs:
            raise ContractError(f"the name {name} is given twice (input, output, param or wildcard)")
        kwargs[name] = value
    return kwargs


def check_signature(rule: str, step: Callable[..., Any], names: Iterable[str], extra: Iterable[str] = ()) -> None:
    """Every name of the rule is an argument of the step, and every argument without a default is given.

    Args:
        rule: The rule, for messages.
        step: Its step function.
        names: The arguments the rule gives (``rule_arguments``' keys).
        extra: Arguments the job may add (``sheet``, ``threads``) when the step takes them.

    Raises:
        ContractError: naming the names that do not match.
    """
    params = inspect.signature(step).parameters
    names = set(names)
    unknown = sorted(names - set(params))
    required = {
        n
        for n, p in params.items()
        if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    missing = sorted(required - names - set(extra))
    if unknown or missing:
        parts = [f"the rule gives {', '.join(unknown)} that covidct.steps.{rule} does not take"] if unknown else []
        parts += [f"covidct.steps.{rule} needs {', '.join(missing)} that the rule does not give"] if missing else []
        raise ContractError(f"rule {rule}: " + "; ".join(parts))


def _named(namedlist: Any) -> dict[str, Any]:
    """The named entries of a Snakemake Namedlist; an unnamed entry breaks the contract."""
    named = dict(namedlist.items())
    n_named = sum(len(v) if isinstance(v, list) and not isinstance(v, str) else 1 for v in named.values())
    if len(namedlist) > n_named:
        raise ContractError("every input and output of a rule must be named (the names are the step's arguments)")
    return named


def run_rule(snakemake: Any) -> Any:
    """Run the step of ``snakemake.rule`` with the job's names as arguments, logging into the rule's log.

    Args:
        snakemake: The object Snakemake injects into scripts.

    Returns:
        What the step returns.
    """
    logging.basicConfig(filename=snakemake.log[0], filemode="w", level=logging.INFO, format=LOG_FORMAT, force=True)
    try:
        step = step_for(snakemake.rule)
        kwargs = rule_arguments(
            _named(snakemake.input),
            _named(snakemake.output),
            dict(snakemake.params.items()),
            dict(snakemake.wildcards.items()),
        )
        accepted = inspect.signature(step).parameters
        if SHEET_ARGUMENT in accepted:
            kwargs[SHEET_ARGUMENT] = snakemake.config["patients"]  # never a param: renaming the sheet re-runs nothing
        if THREADS_ARGUMENT in accepted:
            kwargs[THREADS_ARGUMENT] = snakemake.threads
        check_signature(snakemake.rule, step, kwargs)
        return step(**kwargs)
    except CovidctError as exc:
        logging.getLogger("covidct").error("%s", exc)
        print(f"covidct error in rule {snakemake.rule}: {exc}", file=sys.stderr)
        sys.exit(1)
