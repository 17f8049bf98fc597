#!/usr/bin/env bash
# Bring up the one-node SLURM test cluster for tests/workflow/test_slurm.py (called by `make test`).
# Installs Debian's slurm packages when they are missing only with COVIDCT_TEST_INSTALL=1 (CI sets it in
# .ci/run) as root with apt: `make test` never installs system packages on a user's machine unasked.
# Starts the cluster with ../shared/slurm/start-slurm.sh. Never fails: without a cluster the SLURM test
# skips and says why.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
start="${COVIDCT_SLURM_START:-$here/../../../../shared/slurm/start-slurm.sh}"
if ! command -v sbatch >/dev/null 2>&1; then
    if [ "${COVIDCT_TEST_INSTALL:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "slurm: installing slurmctld slurmd slurm-client munge (apt, COVIDCT_TEST_INSTALL=1)"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            slurmctld slurmd slurm-client munge; } >/tmp/covidct-slurm-apt.log 2>&1 \
            || { echo "slurm: apt install failed (see /tmp/covidct-slurm-apt.log)"; exit 0; }
    else
        echo "slurm: not installed; set COVIDCT_TEST_INSTALL=1 as root with apt-get to install it (the SLURM test will skip)"
        exit 0
    fi
fi
if sinfo -h >/dev/null 2>&1; then
    echo "slurm: cluster already up"
elif [ -f "$start" ]; then
    bash "$start" || echo "slurm: $start failed: the SLURM test will skip"
else
    echo "slurm: no start script at $start: the SLURM test will skip"
fi
exit 0
