#!/usr/bin/env bash
# Makes .venv at the repository root and installs the project into it, with the extras named
# in $1 (default: local,embedded,bench, what `sale up` and `sale run` need on a machine with no
# broker or database of its own; pyproject.toml says what each extra is for). Idempotent: a
# second run with an unchanged pyproject.toml is instant.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-local,embedded,bench}"

python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  python=python3.11
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv

# llama.cpp compiles for this CPU (-march=native); its AMX kernels crash in decode (SIGSEGV) on
# CPUs that have AMX, so the compiler is told not to use it (AVX-512 stays: the speed is in it).
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
export CMAKE_ARGS="${CMAKE_ARGS:--DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx'}"

stamp=".venv/.installed-${extras//,/-}-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project with extras [$extras] into .venv"
  .venv/bin/python -m pip install --quiet --editable ".[$extras]" 2>&1 \
    | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import marketplace, schemas, agents"  # fail here, not in a test
  touch "$stamp"
fi

# A wheel built before that flag (pip caches built wheels) still has the AMX kernels: rebuild it.
if .venv/bin/python -c "import llama_cpp, sys; sys.exit(b'AMX' not in llama_cpp.llama_print_system_info())" 2>/dev/null; then
  echo "setup: rebuilding llama-cpp-python without its AMX kernels (they crash on this CPU)"
  version=$(.venv/bin/python -c "import llama_cpp; print(llama_cpp.__version__)")
  .venv/bin/python -m pip cache remove llama_cpp_python >/dev/null 2>&1 || true
  .venv/bin/python -m pip install --quiet --force-reinstall --no-deps "llama-cpp-python==$version"
fi

# The dashboard's browser test drives Debian's headless Chromium (tests/integration/browser.py).
if [[ ",$extras," == *",test,"* ]] && ! command -v chromium >/dev/null; then
  echo "setup: installing chromium (the dashboard's browser test)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
fi
