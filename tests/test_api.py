"""The public surface: `__all__` lists exactly the public names, sorted, so the API never drifts."""

from __future__ import annotations

import inspect
import re
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


def _public_signatures() -> list[tuple[str, str]]:
    """(where, annotation) of every parameter and return of the public callables: the
    functions and the public methods of the classes each public module exports."""
    import retry_transport.otel
    import retry_transport.prometheus
    import retry_transport.redis
    import retry_transport.testing
    import retry_transport.testing.upstream

    found = []
    modules = (
        retry_transport,
        retry_transport.redis,
        retry_transport.otel,
        retry_transport.prometheus,
        retry_transport.testing,
        retry_transport.testing.upstream,
    )
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            members = (
                [(f"{name}.{m}", f) for m, f in vars(obj).items() if not m.startswith("_")]
                + [
                    (f"{name}.__init__", vars(obj).get("__init__")),
                    (f"{name}.__new__", vars(obj).get("__new__")),
                ]
                if isinstance(obj, type)
                else [(name, obj)]
            )
            for where, member in members:
                if isinstance(member, staticmethod | classmethod):
                    member = member.__func__
                if isinstance(member, property):
                    member = member.fget
                if inspect.isfunction(member):
                    found += [
                        (f"{module.__name__}.{where}: {param}", str(annotation))
                        for param, annotation in member.__annotations__.items()
                    ]
    return found


def test_no_public_signature_says_any() -> None:
    # Before, ScriptedTransport.handle_request / handle_async_request took and returned Any,
    # and SharedLimiter.ticket and desk_observe_fast took Any.
    signatures = _public_signatures()
    assert len(signatures) > 100  # the walk finds the API
    offending = [where for where, annotation in signatures if re.search(r"\bAny\b", annotation)]
    assert offending == []
