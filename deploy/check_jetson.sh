#!/bin/sh
# Check this Jetson for what the TensorRT backend and `make engine` need, and print what is missing:
#   deploy/check_jetson.sh [--mqtt-host HOST] [--mqtt-port PORT]
# Runs edge.jetson_check with the project's venv (deploy/README.md), or python3 when there is none yet.
cd "$(dirname "$0")/.." || exit 2
PYTHON=.venv/bin/python
[ -x "$PYTHON" ] || { echo "no .venv here yet (deploy/README.md step 1); checking with python3"; PYTHON=python3; }
exec "$PYTHON" -m edge.jetson_check "$@"
