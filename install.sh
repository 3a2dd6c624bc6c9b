#!/usr/bin/env bash
# Set up medcorpus on a fresh machine: system packages, then a virtualenv at .venv with pinned versions.
# Idempotent: a second run only re-installs when constraints.txt or pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")"

# Tesseract OCR reads panel labels (A, B, C ...) in compound figures, in-process through tesserocr,
# which is built below against these headers so that it runs the same libtesseract as the command.
if ! command -v tesseract >/dev/null 2>&1 || ! pkg-config --exists tesseract lept 2>/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq tesseract-ocr \
    libtesseract-dev libleptonica-dev pkg-config g++ >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.medcorpus-install
want=$(cat constraints.txt pyproject.toml | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  # one pinned command: constraints.txt pins every package (numpy<2 for scispacy, pyarrow<26 and
  # pillow<13 for beam, torch 2.13.0 CPU from this machine's wheel cache); tesserocr from source:
  # its wheel bundles another tesseract version, whose reads differ from the command's
  if ! .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt --no-binary tesserocr -e ".[all]" \
      > .venv/pip.log 2>&1; then
    grep -v "is ignored" .venv/pip.log >&2; exit 1
  fi
  .venv/bin/pip check
  echo "$want" > "$stamp"
fi
