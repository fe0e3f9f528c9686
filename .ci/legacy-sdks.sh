#!/usr/bin/env bash
# The SDK integration tests against the older SDK lines still in wide use, which talk through
# classic httpx: openai 1.x and anthropic 0.x, in a venv of their own, outside the work tree
# (LEGACY_VENV, default $TMPDIR/retry-transport-legacy-sdks). LangChain's 0.3 line (the last on
# openai 1.x) runs the LangChain recipe tests there too; pydantic-ai and LiteLLM need the
# current SDK lines, so their tests skip with that reason. httpx2 is installed so that its
# cases are skipped because the SDKs refuse httpx2 clients, not because of an import error.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${LEGACY_VENV:-${TMPDIR:-/tmp}/retry-transport-legacy-sdks}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q -e . \
  "httpx2>=2.16" "pytest>=8" "trio>=0.25" "hypothesis>=6" \
  "openai>=1.66,<2" "anthropic>=0.40,<1" "langchain-openai>=0.3,<0.4"
"$venv/bin/python" -c '
import anthropic, httpx, openai
print(f"legacy SDK lines: openai {openai.__version__}, anthropic {anthropic.__version__},"
      f" httpx {httpx.__version__}")
assert openai.__version__.startswith("1.") and anthropic.__version__.startswith("0.")
'
# A partial run with pytest-cov absent: the project's addopts without its --cov options (and so
# without the coverage floor, which only a whole-suite run can meet).
"$venv/bin/pytest" -p no:cacheprovider -o addopts="--strict-markers --strict-config -ra" \
  tests/integration/test_sdks.py tests/integration/test_frameworks.py
