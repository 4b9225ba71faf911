#!/bin/sh
# Prints the path of a Python >= 3.12 (ansible-core 2.21 needs it): PYTHON if set, then PATH, then pyenv.
ok() { "$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; }
for candidate in "${PYTHON:-}" python3.14 python3.13 python3.12 python3; do
    [ -n "$candidate" ] || continue
    path=$(command -v "$candidate" 2>/dev/null) || continue
    if ok "$path"; then echo "$path"; exit 0; fi
done
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for dir in $(find "$root/versions" -mindepth 1 -maxdepth 1 -name '3.1[2-9]*' 2>/dev/null | sort -rV); do
    path="$dir/bin/python3"
    if ok "$path"; then echo "$path"; exit 0; fi
done
echo "no Python 3.12 or newer found (looked at PYTHON, PATH and pyenv under $root): install one" >&2
exit 1
