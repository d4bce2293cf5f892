#!/usr/bin/env bash
# Which Python interpreters this project supports, and where they are on this machine (used by the Makefile).
#
#   scripts/python.sh supported        the supported minor versions, oldest first (from pyproject.toml's
#                                      requires-python, the one place they are named): 3.11 3.12 3.13
#   scripts/python.sh find [WHICH]     the absolute path of an interpreter that runs, or exit 1 with an install hint.
#                                      WHICH: empty (python3), a version (3.13), a command (python3.13) or a path.
#   scripts/python.sh required X.Y     exit 0 when Python X.Y is here; else fail under CI (CI set to anything but
#                                      empty, 0, false or no: nothing may be skipped there) and elsewhere exit 3 after
#                                      printing what is skipped and how to install it.
#
# A version X.Y is looked for, in order, as `pythonX.Y` on PATH, then in pyenv's versions ($(pyenv root)/versions,
# else ~/.pyenv/versions; the newest patch release installed). pyenv's shims are on PATH but answer `python3.13`
# only when PYENV_VERSION (or a .python-version) selects 3.13, so each candidate is run once to see that it works
# and is the version asked for.
set -euo pipefail
cd "$(dirname "$0")/.."

supported() {
  # requires-python = ">=3.11,<3.14"  ->  3.11 3.12 3.13
  local spec low high minor
  spec=$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' pyproject.toml)
  low=$(sed -n 's/.*>= *3\.\([0-9]*\).*/\1/p' <<<"$spec")
  high=$(sed -n 's/.*< *3\.\([0-9]*\).*/\1/p' <<<"$spec")
  if [[ -z "$low" || -z "$high" ]]; then
    echo "pyproject.toml: requires-python must read \">=3.A,<3.B\" (found: $spec)" >&2
    exit 2
  fi
  local versions=()
  for ((minor = low; minor < high; minor++)); do
    versions+=("3.$minor")
  done
  echo "${versions[*]}"
}

# The interpreter's X.Y, or nothing when it does not run (a pyenv shim without a selected version, say).
version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

# The absolute path of the running interpreter, links resolved (not a shim that picked it, nor python3 -> python3.11).
real_path() {
  "$1" -c 'import os, sys; print(os.path.realpath(sys.executable))' 2>/dev/null
}

pyenv_versions() {
  local root
  root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
  echo "$root/versions"
}

find_version() {
  local want=$1 candidate
  if candidate=$(command -v "python$want" 2>/dev/null) && [[ $(version_of "$candidate") == "$want" ]]; then
    real_path "$candidate"
    return
  fi
  # pyenv's installs, newest patch release first (3.13.10 before 3.13.9).
  while read -r candidate; do
    if [[ -x "$candidate" && $(version_of "$candidate") == "$want" ]]; then
      real_path "$candidate"
      return
    fi
  done < <(ls -d "$(pyenv_versions)/$want".*/bin/"python$want" 2>/dev/null | sort -t. -k3,3nr)
  return 1
}

hint() {
  echo "Python $1 was not found (looked for python$1 on PATH and in $(pyenv_versions)). Install it, e.g.:" \
       "'pyenv install $1' or your distribution's python$1 package, or pass its path: make run PYTHON=/path/to/python$1." >&2
}

find_interpreter() {
  local which=${1:-python3} path version
  if [[ "$which" =~ ^(python)?(3\.[0-9]+)$ ]]; then
    if ! path=$(find_version "${BASH_REMATCH[2]}"); then
      hint "${BASH_REMATCH[2]}"
      exit 1
    fi
  else
    if ! path=$(command -v "$which" 2>/dev/null) || [[ -z $(version_of "$path") ]]; then
      echo "PYTHON=$which is not an interpreter that runs here: pass a version (e.g. PYTHON=3.13), a command" \
           "or a path." >&2
      exit 1
    fi
    path=$(real_path "$path")
  fi
  version=$(version_of "$path")
  if [[ " $(supported) " != *" $version "* ]]; then
    echo "$path is Python $version; this project supports $(supported)(pyproject.toml requires-python):" \
         "choose one with PYTHON=, e.g. make run PYTHON=$(supported | awk '{print $NF}')." >&2
    exit 1
  fi
  echo "$path"
}

in_ci() {
  local ci=${CI:-}
  ci=${ci,,}
  ci=${ci//[[:space:]]/}
  [[ -n "$ci" && "$ci" != 0 && "$ci" != false && "$ci" != no ]]
}

required() {
  if find_version "$1" >/dev/null; then
    return
  fi
  hint "$1"
  if in_ci; then
    echo "CI must run every supported Python: failing." >&2
    exit 1
  fi
  echo "Skipped here (CI fails instead)." >&2
  exit 3
}

case "${1:-}" in
  supported) supported ;;
  find) find_interpreter "${2:-}" ;;
  required) required "${2:?a version, e.g. 3.13}" ;;
  *) echo "usage: $0 supported | find [python3 | 3.13 | python3.13 | /path/to/python] | required X.Y" >&2; exit 2 ;;
esac
