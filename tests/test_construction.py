"""Constructors refuse what they cannot use, at once, with a TypeError naming the parameter;
a transport of the other library than the client's is refused at its first request, naming
the transport to wrap instead; the flavour is read from base classes, not module names."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import httpx
import httpx2
import pytest

from retry_transport import RetryTransport, SharedLimiter, SyncRetryTransport
from retry_transport._flavour import flavour_of, request_flavour

from .transport_helpers import FLAVOURS, R, Script, lib

WRAPPERS: tuple[Any, ...] = (RetryTransport, SyncRetryTransport)


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("transport", ["x", 3, object(), httpx.Client()])
def test_a_non_transport_is_refused_naming_the_parameter(wrapper: Any, transport: object) -> None:
    with pytest.raises(TypeError, match=r"^transport must be an httpx\.(Async)?BaseTransport"):
        wrapper(transport)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_a_sync_transport_in_the_async_wrapper_is_refused(flavour: str) -> None:
    with pytest.raises(TypeError) as caught:
        RetryTransport(lib(flavour).HTTPTransport())
    message = str(caught.value)
    assert message.startswith("transport must be an httpx.AsyncBaseTransport")
    assert f"an {flavour}.BaseTransport" in message
    assert message.endswith("wrap it in SyncRetryTransport instead")


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_an_async_transport_in_the_sync_wrapper_is_refused(flavour: str) -> None:
    with pytest.raises(TypeError) as caught:
        SyncRetryTransport(lib(flavour).AsyncHTTPTransport())
    message = str(caught.value)
    assert message.startswith("transport must be an httpx.BaseTransport")
    assert f"an {flavour}.AsyncBaseTransport" in message
    assert message.endswith("wrap it in RetryTransport instead")


class _DuckAsync:
    async def handle_async_request(self, request: Any) -> Any:
        return httpx.Response(204)


class _DuckSync:
    def handle_request(self, request: Any) -> Any:
        return httpx.Response(204)


def test_a_duck_typed_transport_is_taken_for_httpx() -> None:
    assert isinstance(RetryTransport(_DuckAsync()), httpx.AsyncBaseTransport)  # type: ignore[arg-type]
    assert isinstance(SyncRetryTransport(_DuckSync()), httpx.BaseTransport)  # type: ignore[arg-type]


def test_a_duck_typed_transport_of_the_wrong_style_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^transport must be"):
        RetryTransport(_DuckSync())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^transport must be"):
        SyncRetryTransport(_DuckAsync())  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("limiter", ["x", 1, object()])
def test_a_limiter_that_is_not_one_is_refused(wrapper: Any, limiter: object) -> None:
    with pytest.raises(TypeError, match=r"^limiter must be a Limiter .* which lacks try_admit"):
        wrapper(limiter=limiter)


def test_a_limiter_lacking_one_method_is_refused_naming_it() -> None:
    class Partial(SharedLimiter):
        block_sync = None  # type: ignore[assignment]

    with pytest.raises(TypeError, match=r"which lacks block_sync$"):
        SyncRetryTransport(limiter=Partial())  # type: ignore[arg-type]


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("name", ["clock", "wall_clock", "random"])
def test_a_clock_or_random_source_that_is_not_callable_is_refused(wrapper: Any, name: str) -> None:
    with pytest.raises(TypeError, match=f"^{name} must be a callable returning a float, got 5$"):
        wrapper(**{name: 5})


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_a_policy_that_is_not_one_is_refused(wrapper: Any) -> None:
    with pytest.raises(TypeError, match=r"^policy must be a RetryPolicy"):
        wrapper(policy={"max_attempts": 3})


@pytest.mark.parametrize("wrapper", WRAPPERS)
@pytest.mark.parametrize("hooks", [3, "alert", print])
def test_hooks_that_are_not_a_sequence_are_refused_naming_the_parameter(
    wrapper: Any, hooks: object
) -> None:
    with pytest.raises(TypeError, match=r"^hooks must be a sequence of callables, got "):
        wrapper(hooks=hooks)


@pytest.mark.parametrize("key", ["s3cret-fingerprint-key", 3])
def test_a_fingerprint_key_that_is_not_bytes_is_refused_at_construction(key: object) -> None:
    # Before, a str key was taken and the first request failed inside hmac.
    with pytest.raises(
        TypeError, match=r"^SharedLimiter: fingerprint_key must be bytes or None, got "
    ) as caught:
        SharedLimiter(fingerprint_key=key)  # type: ignore[arg-type]
    assert str(key) not in str(caught.value)  # a secret: never echoed


# -- a transport of the other library than the client's -------------------------------------------


def test_the_default_transport_in_an_httpx2_client_names_the_transport_to_wrap() -> None:
    with (
        httpx2.Client(transport=SyncRetryTransport()) as client,
        pytest.raises(TypeError) as caught,
    ):
        client.get("http://up.test/")
    assert str(caught.value) == (
        "retry_transport: this SyncRetryTransport wraps an httpx transport (HTTPTransport) but "
        "was given a request from an httpx2 client, whose responses must be httpx2's own: wrap "
        "an httpx2 transport, SyncRetryTransport(httpx2.HTTPTransport())"
    )


@pytest.mark.anyio
async def test_an_async_httpx_transport_in_an_httpx2_client_names_the_transport_to_wrap() -> None:
    script = Script("httpx", [R(200)])
    async with httpx2.AsyncClient(transport=RetryTransport(script.mock())) as client:
        with pytest.raises(TypeError, match=r"RetryTransport\(httpx2\.AsyncHTTPTransport\(\)\)$"):
            await client.post("http://up.test/", content=b"x")
    assert script.count == 0


def test_an_httpx2_transport_in_an_httpx_client_names_the_transport_to_wrap() -> None:
    script = Script("httpx2", [R(200)])
    with (
        httpx.Client(transport=SyncRetryTransport(script.mock())) as client,
        pytest.raises(TypeError, match=r"SyncRetryTransport\(httpx\.HTTPTransport\(\)\)$"),
    ):
        client.get("http://up.test/")
    assert script.count == 0


def test_a_request_of_neither_library_is_not_refused_for_its_class() -> None:
    assert request_flavour(object()) is None


# -- the flavour is read from the classes, not from their module names ---------------------------


def test_the_flavour_survives_an_sdk_renaming_the_base_classes_module(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # What `import openai` does to httpx2's transport base classes.
    monkeypatch.setattr(httpx2.BaseTransport, "__module__", "openai")
    monkeypatch.setattr(httpx2.AsyncBaseTransport, "__module__", "openai")

    class Custom(httpx2.BaseTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(200, content=b"custom")

    Custom.__module__ = "workload_identity"
    assert flavour_of(Custom(), is_async=False).name == "httpx2"
    with httpx2.Client(transport=SyncRetryTransport(Custom())) as client:
        assert client.get("http://up.test/").text == "custom"


def _fresh(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_custom_httpx2_transport_works_after_import_openai_in_a_fresh_interpreter() -> None:
    result = _fresh(
        """
        import openai  # rebinds httpx2.BaseTransport.__module__ to "openai"
        import httpx2
        from retry_transport import SyncRetryTransport

        assert httpx2.BaseTransport.__module__ == "openai", httpx2.BaseTransport.__module__

        class Custom(httpx2.BaseTransport):
            def handle_request(self, request):
                return httpx2.Response(200, json={"object": "list", "data": []})

        transport = SyncRetryTransport(Custom())
        assert isinstance(transport, httpx2.BaseTransport)
        client = openai.OpenAI(api_key="k", http_client=httpx2.Client(transport=transport))
        print(len(client.models.list().data))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "0\n"


def test_every_constructor_case_in_a_fresh_interpreter() -> None:
    result = _fresh(
        """
        import httpx, httpx2
        from retry_transport import RetryTransport, SyncRetryTransport

        def error(make):
            try:
                make()
            except TypeError as exc:
                return str(exc).split(",")[0]
            return "accepted"

        print(error(lambda: RetryTransport("x")))
        print(error(lambda: SyncRetryTransport("x")))
        print(error(lambda: RetryTransport(httpx2.HTTPTransport())))
        print(error(lambda: SyncRetryTransport(httpx.AsyncHTTPTransport())))
        print(error(lambda: RetryTransport(limiter="x")))
        with httpx2.Client(transport=SyncRetryTransport()) as client:
            print(error(lambda: client.get("http://127.0.0.1:9/")).split(" but ")[0])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "transport must be an httpx.AsyncBaseTransport or httpx2.AsyncBaseTransport (or None"
        " for a default httpx one)",
        "transport must be an httpx.BaseTransport or httpx2.BaseTransport (or None for a default"
        " httpx one)",
        "transport must be an httpx.AsyncBaseTransport or httpx2.AsyncBaseTransport for"
        " RetryTransport",
        "transport must be an httpx.BaseTransport or httpx2.BaseTransport for SyncRetryTransport",
        "limiter must be a Limiter (a SharedLimiter",
        "retry_transport: this SyncRetryTransport wraps an httpx transport (HTTPTransport)",
    ]


def test_a_library_not_imported_is_not_looked_at(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "httpx2")
    assert flavour_of(httpx.HTTPTransport(), is_async=False).name == "httpx"
    assert request_flavour(httpx.Request("GET", "http://up.test/")) == "httpx"


def test_a_duck_typed_request_is_not_refused_for_its_class() -> None:
    from types import SimpleNamespace

    request = SimpleNamespace(
        method="GET",
        url=httpx.URL("http://up.test/"),
        headers=httpx.Headers(),
        stream=iter([b""]),  # not a ByteStream: the slow path, where the client is checked
        extensions={},
    )
    response = SyncRetryTransport(_DuckSync()).handle_request(request)  # type: ignore[arg-type]
    assert response.status_code == 204


@pytest.mark.parametrize("wrapper", WRAPPERS)
def test_the_checked_callables_leave_the_name_alone(wrapper: Any) -> None:
    transport = wrapper(name="nim", clock=lambda: 0.0, wall_clock=lambda: 0.0, random=lambda: 0.5)
    assert transport.name == "nim"
    assert wrapper().name is None
