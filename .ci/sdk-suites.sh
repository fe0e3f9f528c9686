#!/usr/bin/env bash
# The openai and anthropic SDKs' own test suites, run with every client transport they build
# wrapped in ours (tests/sdk_suites/retry_transport_sdk_plugin.py), at the SDK versions of the
# project's venv. Their tests ship in the SDKs' source distributions, which are downloaded and
# unpacked outside the work tree (SDK_SUITES_DIR, default $TMPDIR/retry-transport-sdk-suites)
# and never committed; the suites run in a venv of their own there. Fails when a test fails
# that tests/sdk_suites/expected-failures.txt does not list (with its reason), or when no
# transport was wrapped. SDK_SUITES_BASELINE=1 also runs each suite unwrapped first (every
# failure there is one to deselect in tests/sdk_suites/deselected.txt, with its reason).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
project_python="${PROJECT_PYTHON:-$repo/.venv/bin/python}"
work="${SDK_SUITES_DIR:-${TMPDIR:-/tmp}/retry-transport-sdk-suites}"
read -r openai_version anthropic_version < <(
  "$project_python" -c 'import openai, anthropic; print(openai.__version__, anthropic.__version__)'
)
echo "sdk-suites: openai $openai_version, anthropic $anthropic_version, in $work"

mkdir -p "$work"
venv="$work/venv"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -e "$repo" -r "$repo/tests/sdk_suites/requirements.txt" \
  "openai[aiohttp,realtime]==$openai_version" \
  "anthropic[aiohttp,vertex,bedrock,mcp,webhooks]==$anthropic_version"

rm -rf "$work/sdist" "$work/src"
mkdir -p "$work/sdist" "$work/src"
"$venv/bin/pip" download -q --no-deps --no-binary :all: -d "$work/sdist" \
  "openai==$openai_version" "anthropic==$anthropic_version"
for archive in "$work"/sdist/*.tar.gz; do
  tar -xzf "$archive" -C "$work/src"
done

# Each suite: its own pytest settings but for xdist (`-n auto`; our plugin counts in one
# process) and with its early plugins kept (anthropic aliases `httpx` to httpx2 first).
run_suite() {
  local sdk="$1" version="$2" wrap="$3"
  shift 3
  (
    cd "$work/src/$sdk-$version"
    RETRY_TRANSPORT_SDK="$sdk" RETRY_TRANSPORT_SDK_WRAP="$wrap" \
      PYTHONPATH="$repo/tests/sdk_suites" \
      "$venv/bin/python" -m pytest -q -p no:cacheprovider -o addopts="" --tb=short \
      "$@" -p retry_transport_sdk_plugin
  )
}

status=0
for wrap in ${SDK_SUITES_BASELINE:+0} 1; do
  start=$SECONDS
  run_suite openai "$openai_version" "$wrap" || status=1
  echo "sdk-suites: openai (wrap=$wrap) took $((SECONDS - start)) s"
  start=$SECONDS
  run_suite anthropic "$anthropic_version" "$wrap" -p tests._alias_httpx || status=1
  echo "sdk-suites: anthropic (wrap=$wrap) took $((SECONDS - start)) s"
done
exit "$status"
