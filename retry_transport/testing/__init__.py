"""Helpers for users' own test suites: waiting switched off, and scripted upstreams.

Retries run instantly inside `no_waiting` (or with the `retry_no_wait` pytest fixture), and a
`ScriptedTransport` answers requests from a list of steps without a network:

>>> import httpx
>>> from retry_transport import SyncRetryTransport
>>> from retry_transport.testing import ScriptedTransport, Step, no_waiting
>>> upstream = ScriptedTransport([
...     Step.json(400, {"error": {"message": "Invalid request sent to provider"}}),
...     Step.json(200, {"ok": True}),
... ])
>>> with no_waiting(), httpx.Client(transport=SyncRetryTransport(upstream)) as client:
...     client.post("https://api.example/v1/chat/completions", json={}).status_code
200
>>> upstream.call_count
2

For a real server on 127.0.0.1 that plays an LLM provider (its errors, its streams, its stream
faults and rate limits), see `retry_transport.testing.upstream`. Both record what they received
as the same `Received`.
"""

from __future__ import annotations

from ._received import Received
from ._scripted import ExceptionSpec, ScriptedTransport, ScriptExhausted, Step
from ._waiting import is_testing, no_waiting, set_testing

__all__ = [
    "ExceptionSpec",
    "Received",
    "ScriptExhausted",
    "ScriptedTransport",
    "Step",
    "is_testing",
    "no_waiting",
    "set_testing",
]

try:
    from ._waiting import retry_no_wait
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pass
else:
    __all__ += ["retry_no_wait"]
