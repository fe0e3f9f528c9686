"""The public surface: `__all__` lists exactly the public names, sorted, so the API never drifts."""

from __future__ import annotations

import inspect
import subprocess
import sys

import retry_transport


def test_all_is_sorted_and_complete() -> None:
    public = sorted(
        name
        for name in vars(retry_transport)
        if not name.startswith("_")
        and name not in {"annotations", "testing", "redis", "otel", "prometheus", "proxy"}
    )
    assert retry_transport.__all__ == sorted(retry_transport.__all__)
    assert sorted(retry_transport.__all__) == sorted([*public, "__version__"])


def test_contract_names_are_exported() -> None:
    for name in (
        "RetryTransport",
        "SyncRetryTransport",
        "RetryPolicy",
        "Backoff",
        "SharedLimiter",
        "RetryBudget",
        "Verdict",
        "classify",
    ):
        assert name in retry_transport.__all__


def test_every_public_name_has_a_docstring() -> None:
    for name in retry_transport.__all__:
        if name == "__version__":
            continue
        obj = getattr(retry_transport, name)
        if isinstance(obj, type) or inspect.isfunction(obj):  # not type aliases such as Hook
            assert (obj.__doc__ or "").strip(), name


def test_importing_the_package_imports_no_optional_library() -> None:
    code = (
        "import sys, retry_transport\n"
        "loaded = {'httpx2', 'redis', 'starlette', 'uvicorn', 'opentelemetry', "
        "'prometheus_client', 'openai', 'anthropic', 'trio'} & set(sys.modules)\n"
        "print(sorted(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
