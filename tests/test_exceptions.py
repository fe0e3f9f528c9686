"""The exception table: one meaning (verdict, how much was sent) per transport exception."""

from __future__ import annotations

import httpx
import httpx2
import pytest

from retry_transport import Verdict
from retry_transport._exceptions import EXCEPTIONS, Sent, meaning_of


@pytest.mark.parametrize("library", [httpx, httpx2], ids=["httpx", "httpx2"])
@pytest.mark.parametrize("name", sorted(EXCEPTIONS))
def test_every_name_in_the_table_is_an_exception_of_both_flavours(
    library: object, name: str
) -> None:
    cls = getattr(library, name)
    assert issubclass(cls, Exception)
    assert meaning_of(cls("boom")) is EXCEPTIONS[name]


def test_connect_phase_errors_sent_nothing() -> None:
    for name in ("ConnectError", "ConnectTimeout", "PoolTimeout"):
        assert EXCEPTIONS[name].sent is Sent.NOTHING


def test_a_read_timeout_may_have_been_processed() -> None:
    meaning = meaning_of(httpx.ReadTimeout("slow"))
    assert meaning is not None
    assert meaning.sent is Sent.MAYBE_PROCESSED


def test_the_nearest_class_along_the_mro_decides() -> None:
    class Custom(httpx.ConnectTimeout):
        pass

    meaning = meaning_of(Custom("x"))
    assert meaning is EXCEPTIONS["ConnectTimeout"]


def test_an_unknown_exception_has_no_meaning() -> None:
    assert meaning_of(ValueError("x")) is None


def test_every_known_exception_is_transient() -> None:
    assert {m.verdict for m in EXCEPTIONS.values()} == {Verdict.TRANSIENT}
