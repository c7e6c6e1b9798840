#!/usr/bin/env bash
# Run by Snakemake inside the freshly created conda env (envs/ctrlsparse.yaml). Snakemake copies env files to
# .snakemake/conda/, so the checkout is found through CTRLSPARSE_SOURCE (set by workflow/rules/common.smk).
set -euo pipefail
pip install --no-input -e "${CTRLSPARSE_SOURCE:?set by the workflow}[report,tracking]"
