#!/usr/bin/env bash
# Creates .venv (once) and installs the given requirements files into it; does nothing when the
# same requirements were installed before. Needs only python3 and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        # Some Python builds ship without ensurepip; virtualenv needs only pip.
        rm -rf "$venv"
        python3 -m pip install --quiet --user virtualenv
        python3 -m virtualenv --quiet "$venv"
    fi
fi
stamp="$venv/.installed"
touch "$stamp"
wanted=$(cat "$@" | grep -v '^\s*\(#\|$\)' | sort -u)
if [ -n "$(comm -23 <(echo "$wanted") <(sort -u "$stamp"))" ]; then
    echo "installing into $venv: $(echo "$wanted" | tr '\n' ' ')" >&2
    for file in "$@"; do
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$file"
    done
    sort -u "$stamp" <(echo "$wanted") > "$stamp.new"
    mv "$stamp.new" "$stamp"
fi
