#!/usr/bin/env bash
# Makes .venv at the repository root and installs the project into it, with the extras named
# in $1 (default: embedded). Idempotent: a second run with an unchanged pyproject.toml is instant.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded}"

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  python=python3.11
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=".venv/.installed-${extras//,/-}-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project with extras [$extras] into .venv"
  .venv/bin/python -m pip install --quiet --editable ".[$extras]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import marketplace, schemas, agents"  # fail here, not in a test
  touch "$stamp"
fi
