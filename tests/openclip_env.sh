#!/usr/bin/env bash
# open_clip's training data path over a build's shards (tests/test_openclip_train.py), in an
# environment of its own: open_clip needs torchvision (PyPI builds it for CUDA torch; in .venv beside
# the CPU torch it breaks transformers' CLIP import) and webdataset<=0.2.86 (.venv pins 1.0.2).
# .venv-openclip sees .venv's packages (a .pth file) and adds requirements-openclip.txt.
# Usage: tests/openclip_env.sh [pytest arguments]   (run ./install.sh first)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-openclip
[ -x $VENV/bin/python ] || "${PYTHON:-python3}" -m venv $VENV
own_site=$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -c 'import sys; print("\n".join(p for p in sys.path if p.endswith("-packages")))' \
  > "$own_site/medcorpus-main-venv.pth"
stamp=$VENV/.medcorpus-install
want=$(cat requirements-openclip.txt constraints.txt | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  if ! $VENV/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-openclip.txt \
       > $VENV/pip.log 2>&1; then
    grep -v "is ignored" $VENV/pip.log >&2; exit 1
  fi
  echo "$want" > "$stamp"
fi
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $VENV/bin/python -m pytest -q -p no:randomly tests/test_openclip_train.py "$@"
