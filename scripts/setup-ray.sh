#!/usr/bin/env bash
# Installs Ray (ray[default]==2.60.0, from PyPI) into a virtual environment outside the repo,
# once; prints the path of its `ray` command. Used by the Ray evaluator tests.
set -euo pipefail
env_dir="${ISTS_RAY_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ists/rayenv}"
if [ ! -x "$env_dir/bin/ray" ]; then
  echo "setup-ray: installing ray[default]==2.60.0 into $env_dir (about 110 MB, once)" >&2
  python3 -m venv "$env_dir"
  "$env_dir/bin/pip" install -q "ray[default]==2.60.0" >&2
fi
echo "$env_dir/bin/ray"
