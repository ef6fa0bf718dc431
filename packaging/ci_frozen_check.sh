#!/usr/bin/env bash
# CI: build the packaged executable and run its --self-test offscreen, without network.
# Exits non-zero when the build or the self-test fails.
#
# Reuses PyInstaller's work folder build/pyinstaller when present (a rebuild with unchanged
# sources skips the analysis). Set INSPECTOR_CI_CLEAN_BUILD=1 to build from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${INSPECTOR_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import PyInstaller" 2>/dev/null; then
    echo "== installing PyInstaller into $venv"
    "$venv/bin/pip" install -q -e ".[package]"
fi

echo "== frozen build"
build_args=()
if [ "${INSPECTOR_CI_CLEAN_BUILD:-0}" = 1 ]; then build_args=(--clean); fi
INSPECTOR_VENV="$venv" bash packaging/build.sh "${build_args[@]}"

exe=dist/inspector/inspector
[ -x "$exe" ] || { echo "frozen check: $exe was not built" >&2; exit 1; }

# The frozen program must write nothing outside its data/settings folders and the project:
# run it with an empty HOME and temporary folder and look at them afterwards.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$scratch/home" "$scratch/tmp"
run_frozen() {
    env -u DISPLAY -u WAYLAND_DISPLAY -u XDG_CONFIG_HOME -u XDG_DATA_HOME -u XDG_CACHE_HOME -u XDG_STATE_HOME \
        QT_QPA_PLATFORM=offscreen HOME="$scratch/home" TMPDIR="$scratch/tmp" "$@"
}

echo "== frozen --version"
version_output="$(run_frozen "$exe" --version)"
echo "$version_output"
case "$version_output" in
    "inspector 0.0.0"*|"") echo "frozen check: the build lacks the package metadata ($version_output)" >&2; exit 1 ;;
esac

echo "== frozen --self-test"
network_note="network available (could not isolate: unshare -n needs root)"
runner=()
if command -v unshare >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
    runner=(unshare -n)
    network_note="no network (unshare -n)"
fi
echo "   running with $network_note"
start=$(date +%s)
if ! run_frozen timeout 600 "${runner[@]}" "$exe" --self-test; then
    echo "frozen check: the frozen --self-test FAILED" >&2
    exit 1
fi
echo "   self-test took $(( $(date +%s) - start )) s including start-up"

left_behind="$(find "$scratch/home" "$scratch/tmp" -mindepth 1 | head -20)"
if [ -n "$left_behind" ]; then
    echo "frozen check: the self-test left files behind:" >&2
    echo "$left_behind" >&2
    exit 1
fi
echo "== frozen check passed ($network_note; nothing written to HOME or TMPDIR)"
