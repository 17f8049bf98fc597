# Two commands for a new user (README): `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= 2
# Where torch comes from: PyTorch's CPU wheel index (PyPI's torch is the CUDA build, several GB).
# A GPU machine: make install TORCH_INDEX=https://download.pytorch.org/whl/cu126 (docs/install.md).
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: demo test test-fast test-real install lint format clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch first, alone, from TORCH_INDEX (a wheel already on the machine is used as well); then the package
	# with its pins, torch already satisfied (docs/install.md)
	$(VENV)/bin/pip install --quiet --retries 1 --timeout 10 --extra-index-url $(TORCH_INDEX) torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[cpu,test]'
	touch $@

install: $(VENV)/.installed

# Snakemake's gpu resource for the demo: the GPUs nvidia-smi lists. Without a GPU, the GPU-tagged jobs (lung
# masks, infection masks, trainings) run on the CPU, and only --cores limits them: a threshold lung mask
# does not wait for a training to give back a GPU that is not there.
GPUS ?= $(shell n=$$(nvidia-smi -L 2>/dev/null | grep -c '^GPU'); [ "$${n:-0}" -gt 0 ] && echo $$n || echo $(CORES))

# Set everything up and run the whole pipeline on the built-in synthetic demo cohort. One thread per job:
# the infection U-Net's training keeps about one core busy, and the patients' steps run on the other
# (on 2 cores 295-308 s for the workflow against 392 s with two threads per job and one gpu token; docs/demo.md).
demo: install
	$(VENV)/bin/snakemake --cores $(CORES) --max-threads 1 --resources gpu=$(GPUS) --keep-going --configfile config/config.yaml config/demo.yaml
	$(VENV)/bin/snakemake --report results/report.html --configfile config/config.yaml config/demo.yaml

# The test suite (what CI runs).
# tests/workflow/slurm/up.sh starts a one-node SLURM cluster for the SLURM test where it can (../shared/slurm
# present; the Debian packages installed only with COVIDCT_TEST_INSTALL=1 as root with apt, as CI does);
# otherwise that test skips and says why.
# tests/workflow/pacs/up.sh starts two Orthanc servers and finds dciodvfy for the clinical-output tests;
# it installs their Debian packages only with COVIDCT_TEST_INSTALL=1 (CI), else those tests skip and say why.
test: install
	bash tests/workflow/slurm/up.sh
	bash tests/workflow/pacs/up.sh
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/python -m pytest -q

# The inner loop: everything but the whole-workflow tests under tests/workflow (marked slow).
test-fast: install
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/python -m pytest -q -m "not slow"

# The real-data training test (about 5 minutes on 2 cores, over the suite's budget, so not in `make test`):
# a U-Net trained on COVID-SemiSeg + a real non-COVID CT's lungs must leave another real lung <= 2 % marked.
test-real: install
	COVIDCT_TEST_REAL_TRAINING=1 PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/python -m pytest -q -s tests/unit/infection/test_real_lungs.py

# One ruff configuration (pyproject.toml): lint and format check; and Snakemake's own lint.
lint: install
	$(VENV)/bin/ruff check src tests bench workflow/scripts
	$(VENV)/bin/ruff format --check src tests bench workflow/scripts
	$(VENV)/bin/snakemake --lint

format: install
	$(VENV)/bin/ruff check --fix src tests bench workflow/scripts
	$(VENV)/bin/ruff format src tests bench workflow/scripts

clean:
	rm -rf results .snakemake
