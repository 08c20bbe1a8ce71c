#!/bin/sh
# Quick start: install dependencies, build stowage, and run a restore -> build -> save demo
# against the built-in local-directory store. Run from the repository root.
set -eu
cd "$(dirname "$0")/.."
tests/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)"
exec examples/demo.sh build/stowage
