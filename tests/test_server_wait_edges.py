"""Retry-After dates without a zone, headers that raise, and micro/nanosecond phrases."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from email.utils import parsedate_to_datetime

from retry_transport._waits import body_wait, server_wait


class _Hostile(Mapping[str, str]):
    def __getitem__(self, key: str) -> str:
        raise RuntimeError("broken mapping")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def test_a_date_with_minus_zero_zone_is_read_as_utc() -> None:
    date = "Wed, 21 Oct 2015 07:28:00 -0000"
    assert parsedate_to_datetime(date).tzinfo is None  # the case being tested
    now = parsedate_to_datetime("Wed, 21 Oct 2015 07:27:30 +0000").timestamp()
    assert server_wait({"retry-after": date}, now=now) == 30.0


def test_headers_that_raise_give_no_wait() -> None:
    assert server_wait(_Hostile(), now=0.0) is None


def test_micro_and_nanosecond_phrases() -> None:
    assert body_wait("Please try again in 500us") == 500e-6
    assert body_wait("Please try again in 2500000ns") == 2500000e-9
