"""The one contract between rules and steps: every rule of the workflow runs the step named after it,
and the rule's input, output, param and wildcard names are exactly the step's arguments."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest

from covidct import sheet, steps
from covidct.deid import redact
from covidct.smk import SHEET_ARGUMENT, THREADS_ARGUMENT, ContractError, check_signature, rule_arguments, step_for
from helpers import REPO, write_config

# Loads the workflow in a subprocess (Snakemake's API changes the working directory) with every optional
# rule switched on, and prints each rule's names.
_LIST_RULES = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings
workdir, configfile = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(resource_settings=ResourceSettings(), config_settings=ConfigSettings(configfiles=[configfile]),
                      storage_settings=StorageSettings(), workdir=workdir, snakefile=Path(sys.argv[3]))
    out = {}
    for rule in wf._workflow.rules:
        out[rule.name] = {
            "input": sorted(rule.input._names), "output": sorted(rule.output._names),
            "params": sorted(rule.params._names), "wildcards": sorted(rule.wildcard_names),
            "unnamed_input": len(rule.input) > sum(1 if j is None else j - i for i, j in rule.input._names.values()),
            "unnamed_output": len(rule.output) > sum(1 if j is None else j - i for i, j in rule.output._names.values()),
            "script": rule.script,
            "snakefile": str(rule.snakefile),
        }
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    work = tmp_path_factory.mktemp("contract")
    sheet = work / "patients.tsv"
    sheet.write_text(
        "patient_id\tdicom_dir\tlabel\tscore\tlung_reference\tsubject_id\n"
        "p1\traw/p1\t1\t20\tref/p1.dcm\ts1\np2\traw/p2\t\t\t\ts1\nbad id\traw/x\t\t\t\t\n"
    )
    config = write_config(
        work,
        sheet,
        evaluation={"folds": 3},
        infection={"test": {"images": str(work / "Imgs"), "masks": str(work / "GT")}},
        lung_mask={"lobes": {"model": "LTRCLobes_R231", "weights": ""}},
        clinical={"enabled": True},
        pacs={"push": {"enabled": True, "url": "http://127.0.0.1:1/dicom-web"}},
    )
    res = subprocess.run(
        [sys.executable, "-c", _LIST_RULES, str(work), str(config), str(REPO / "Snakefile")],
        capture_output=True,
        text=True,
        cwd=work,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_every_rule_runs_the_generic_script_and_has_a_step(rules):
    assert len(rules) >= 20
    for name, rule in rules.items():
        if name == "all":
            continue
        assert rule["script"] == "../scripts/step.py", name
        assert callable(step_for(name)), name
        assert not rule["unnamed_input"] and not rule["unnamed_output"], f"{name}: unnamed input or output"


def test_every_step_lives_in_the_module_of_its_rules_file_and_is_short(rules):
    """``workflow/rules/lungs.smk``'s rules run steps of ``covidct.steps.lungs``; a step reads, makes one
    call into its package and writes: at most 40 lines of code besides its signature and docstring."""
    for name, rule in rules.items():
        if name == "all":
            continue
        step = step_for(name)
        assert step.__module__ == f"covidct.steps.{Path(rule['snakefile']).stem}", (name, rule["snakefile"])
        source = inspect.getsource(step)
        body = ast.parse(source).body[0].body
        if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        n_lines = body[-1].end_lineno - body[0].lineno + 1
        assert n_lines <= 40, f"covidct.steps.{name} has {n_lines} lines of code"


def test_every_rules_names_are_its_steps_arguments(rules):
    optional = (
        "cross_validate",
        "evaluate_infection_unet",
        "evaluate_lung_mask",
        "evaluate_native_lung_mask",
        "lung_eval_table",
        "native_masks",
        "push_to_pacs",
        "reject_sheet_row",
        "segment_lobes",
        "severity_vs_score",
        "severity_followup",
    )
    assert set(optional) <= set(rules), "the fixture must switch every optional rule on"
    for name, rule in rules.items():
        if name == "all":
            continue
        step = step_for(name)
        names = rule_arguments(
            dict.fromkeys(rule["input"], ""),
            dict.fromkeys(rule["output"], ""),
            dict.fromkeys(rule["params"], ""),
            dict.fromkeys(rule["wildcards"], ""),
        )
        check_signature(name, step, names, extra=(SHEET_ARGUMENT, THREADS_ARGUMENT))
        # and the step takes nothing the rule does not give, but for the job's own arguments and defaults
        params = inspect.signature(step).parameters
        for arg, p in params.items():
            if arg not in names and arg not in (SHEET_ARGUMENT, THREADS_ARGUMENT):
                assert p.default is not inspect.Parameter.empty, (name, arg)


def test_the_check_names_what_does_not_match():
    def step(volume, out_mask, patient, n_slices=8):
        return None

    check_signature("demo", step, ["volume", "out_mask", "patient"])
    with pytest.raises(ContractError, match="the rule gives spacing that covidct.steps.demo does not take"):
        check_signature("demo", step, ["volume", "out_mask", "patient", "spacing"])
    with pytest.raises(ContractError, match="covidct.steps.demo needs out_mask that the rule does not give"):
        check_signature("demo", step, ["volume", "patient"])
    with pytest.raises(ContractError, match="given twice"):
        rule_arguments({"mask": "a"}, {}, {"mask": 1}, {})
    with pytest.raises(ContractError, match="has no function"):
        step_for("no_such_rule")
    assert rule_arguments({"npy": ["a", "b"]}, {"csv": "c"}, {"n": 2}, {"patient": "p1"}) == {
        "npy": ["a", "b"],
        "out_csv": "c",
        "n": 2,
        "patient": "p1",
    }


def test_helpers_are_not_steps():
    """Only rules' steps are steps: a helper (the sheet reader, the redaction) lives in its own package."""
    for name in ("_redact", "raw_dicom_dir", "redact", "Volume"):
        with pytest.raises(ContractError):
            step_for(name)
    assert sheet.raw_dicom_dir.__name__ == "raw_dicom_dir" and redact.redact.__name__ == "redact"
    public = {name for name in dir(steps) if not name.startswith("_") and callable(getattr(steps, name))}
    assert public == set(steps.__all__), sorted(public ^ set(steps.__all__))
