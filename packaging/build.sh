#!/usr/bin/env bash
# Build the packaged Inspector (PyInstaller, one folder: dist/inspector/).
#
#   bash packaging/build.sh              # reuse .venv (or create .venv-build), build dist/inspector/
#   bash packaging/build.sh --onefile    # one self-extracting file dist/onefile/inspector
#   bash packaging/build.sh --clean      # throw away PyInstaller's cache (build/pyinstaller) first
#
# Environment: INSPECTOR_VENV=path to use a particular virtualenv.
# Prints the build time and the size of what was built.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

onefile=()
clean=()
for arg in "$@"; do
    case "$arg" in
        --onefile) onefile=(-- --onefile) ;;
        --clean) clean=(--clean) ;;
        *) echo "usage: bash packaging/build.sh [--onefile] [--clean]" >&2; exit 2 ;;
    esac
done

venv="${INSPECTOR_VENV:-}"
if [ -z "$venv" ]; then
    if [ -x .venv/bin/python ]; then venv=.venv; else venv=.venv-build; fi
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "creating $venv"
    python3 -m venv "$venv"
fi
# Inspector itself (editable: its dist-info metadata is what copy_metadata() copies) + PyInstaller.
if ! "$venv/bin/python" -c "import PyInstaller, inspector" 2>/dev/null; then
    "$venv/bin/pip" install -q -e ".[package]"
fi

# the one-file build goes to its own folders: dist/inspector is the one-folder build
if [ ${#onefile[@]} -gt 0 ]; then dist=dist/onefile; work=build/pyinstaller-onefile; built=dist/onefile/inspector
else dist=dist; work=build/pyinstaller; built=dist/inspector/; fi

start=$(date +%s.%N)
"$venv/bin/python" -m PyInstaller --noconfirm --log-level WARN "${clean[@]}" \
    --distpath "$root/$dist" --workpath "$root/$work" \
    packaging/inspector.spec "${onefile[@]}"
end=$(date +%s.%N)

printf 'build time: %.1f s\n' "$(echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end - $start)")"
echo "built: $built ($(du -sh "$built" | cut -f1), $(find "$built" -type f | wc -l) files)"
