# Two commands for a new user (README): `make demo` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
CORES ?= 2

.PHONY: demo test install lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned in the same command as lungmask so pip takes the CPU build (see README)
	$(VENV)/bin/pip install --quiet -e '.[cpu,test]'
	touch $@

install: $(VENV)/.installed

# Set everything up and run the whole pipeline on the built-in synthetic demo cohort.
demo: install
	$(VENV)/bin/snakemake --cores $(CORES) --resources gpu=1 --keep-going --configfile config/config.yaml config/demo.yaml
	$(VENV)/bin/snakemake --report results/report.html --configfile config/config.yaml config/demo.yaml

# The test suite (what CI runs).
# tests/slurm/up.sh installs and starts a one-node SLURM cluster for the SLURM test where it can
# (root with apt, ../shared/slurm present); otherwise that test skips and says why.
test: install
	bash tests/slurm/up.sh
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/python -m pytest -q

lint: install
	$(VENV)/bin/snakemake --lint

clean:
	rm -rf results .snakemake
