"""Stream soak (run by hand, not in the suite): agent turns through the anthropic SDK with
stream faults injected, and clean streams of every recognised protocol.

``python -m benchmarks.stream_soak [TURNS] [CLEAN]`` (defaults 300 and 1000):

1. ``TURNS`` streamed agent turns (``messages.stream(...).get_final_message()``) through
   `RetryTransport`, each turn its own path on a loopback upstream. Every attempt draws its
   fate: 5% stall after the headers, 2% cut before content, 2% cut mid-answer, and the usual
   fault mix besides (3% a 529 overload, 2% a 503, 2% an ``overloaded_error`` event before
   content, 1% a dropped connection); the rest answer whole. Expected: no turn lost to a stall
   or a pre-content cut; every mid-answer cut surfaces as an exception; no partial message
   comes back as complete.
2. ``CLEAN`` clean streams of each recognised protocol (the clean variants: CRLF line
   endings, trailing keep-alives, chat without ``[DONE]``, chat with a usage chunk), read
   whole through the transport: none may raise.

A real first-content deadline of 1 s and short backoffs keep the run to a few minutes; the
stalls are real (the upstream goes silent), so this measures the real race, not a fake clock.
Prints a summary and one JSON line.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import anthropic
import anyio
import httpx
import httpx2

from retry_transport import Backoff, RetryPolicy, RetryTransport
from retry_transport.testing.upstream import (
    Reply,
    Upstream,
    anthropic_error,
    anthropic_stream_error,
    stream_reply,
)
from retry_transport.testing.upstream.streams import STREAM_PATHS, StreamProtocol

__all__ = ["main"]

TEXT = "the whole answer in eight words, no less"
POLICY = RetryPolicy(
    max_attempts=5,
    first_content_timeout=1.0,
    congestion_backoff=Backoff(base=0.05, cap=0.5),
    transient_backoff=Backoff(base=0.02, cap=0.2),
)
# (fate, probability per attempt); the rest answer whole.
FATES = (
    ("stall_after_headers", 0.05),
    ("cut_before_content", 0.02),
    ("cut_mid_answer", 0.02),
    ("overloaded_529", 0.03),
    ("unavailable_503", 0.02),
    ("overloaded_event", 0.02),
    ("drop", 0.01),
)
ENDS_A_TURN = frozenset({"whole", "cut_mid_answer"})  # the transport hands these on


def _fate(rng: random.Random) -> str:
    draw = rng.random()
    for fate, p in FATES:
        if draw < p:
            return fate
        draw -= p
    return "whole"


def _reply(fate: str) -> Reply:
    if fate == "whole":
        return stream_reply("anthropic", TEXT)
    if fate in ("stall_after_headers", "cut_before_content", "cut_mid_answer"):
        return stream_reply("anthropic", TEXT, fault=fate)  # type: ignore[arg-type]
    if fate == "overloaded_529":
        return anthropic_error(529, "overloaded_error", "Overloaded")
    if fate == "unavailable_503":
        return anthropic_error(503, "api_error", "upstream unavailable")
    if fate == "overloaded_event":
        return anthropic_stream_error("preamble")
    return Reply(200, fault="drop")


@dataclass
class Turn:
    fates: list[str]
    outcome: str = ""
    error: str = ""


@dataclass
class Tally:
    turns: list[Turn] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)


def _plan(rng: random.Random, turns: int) -> list[Turn]:
    plans: list[Turn] = []
    for _ in range(turns):
        fates: list[str] = []
        while True:
            fate = _fate(rng)
            fates.append(fate)
            if fate in ENDS_A_TURN or len(fates) == POLICY.max_attempts:
                break
        plans.append(Turn(fates))
    return plans


async def _turn(up: Upstream, index: int, turn: Turn, limit: anyio.Semaphore) -> None:
    base = f"{up.url}/turn{index}"
    transport = RetryTransport(httpx2.AsyncHTTPTransport(), policy=POLICY)
    async with limit, httpx2.AsyncClient(transport=transport, timeout=30.0) as http:
        client = anthropic.AsyncAnthropic(base_url=base, api_key="sk-ant-soak", http_client=http)
        try:
            async with client.messages.stream(
                model="claude-sonnet-5",
                max_tokens=64,
                messages=[{"role": "user", "content": "go on"}],
            ) as stream:
                message = await stream.get_final_message()
        except Exception as exc:  # every exception is a finding, counted below
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            turn.outcome = "raised"
            turn.error = type(cause).__name__
            return
        text = "".join(getattr(block, "text", "") for block in message.content)
        turn.outcome = "complete" if text == TEXT else "partial returned as complete"


async def _agent_turns(up: Upstream, turns: int, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    plans = _plan(rng, turns)
    for index, turn in enumerate(plans):
        up.script(f"/turn{index}/v1/messages", *[_reply(fate) for fate in turn.fates])
    limit = anyio.Semaphore(20)
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index, turn in enumerate(plans):
            group.start_soon(_turn, up, index, turn, limit)
    seconds = time.perf_counter() - started
    attempts = Counter(fate for turn in plans for fate in turn.fates)
    cut_turns = [t for t in plans if t.fates[-1] == "cut_mid_answer"]
    exhausted = [t for t in plans if t.fates[-1] not in ENDS_A_TURN]
    answered = [t for t in plans if t.fates[-1] == "whole"]
    return {
        "turns": turns,
        "seconds": seconds,
        "attempts": sum(attempts.values()),
        "attempts_by_fate": dict(attempts),
        "turns_with_a_stall_or_pre_content_cut": sum(
            1 for t in plans if {"stall_after_headers", "cut_before_content"} & set(t.fates)
        ),
        "answered_turns": len(answered),
        "answered_turns_complete": sum(t.outcome == "complete" for t in answered),
        "answered_turns_lost": [t.error or t.outcome for t in answered if t.outcome != "complete"],
        "mid_answer_cuts": len(cut_turns),
        "mid_answer_cuts_raised": sum(t.outcome == "raised" for t in cut_turns),
        "mid_answer_cut_errors": dict(Counter(t.error for t in cut_turns)),
        "partial_returned_as_complete": sum(
            t.outcome == "partial returned as complete" for t in plans
        ),
        "turns_out_of_attempts": len(exhausted),
    }


def _clean_variants(protocol: StreamProtocol) -> list[dict[str, Any]]:
    variants: list[dict[str, Any]] = [{}, {"newline": "\r\n"}, {"trailing_keepalives": 2}]
    if protocol == "openai_chat":
        variants += [{"done": False}, {"usage": True}, {"usage": True, "done": False}]
    return variants


_COHERE = Reply(
    200,
    headers=(("content-type", "text/event-stream"),),
    chunks=(
        b'event: message-start\ndata: {"id":"c1","type":"message-start"}\n\n',
        b'event: content-delta\ndata: {"type":"content-delta","delta":{"message":'
        b'{"content":{"text":"hello"}}}}\n\n',
        b'event: message-end\ndata: {"type":"message-end","delta":{"finish_reason":"COMPLETE"}}'
        b"\n\n",
    ),
)


async def _clean(up: Upstream, protocol: str, count: int) -> dict[str, Any]:
    if protocol == "cohere":
        path, query, replies = "/v2/chat", "", [_COHERE]
    else:
        name: StreamProtocol = protocol  # type: ignore[assignment]
        path = STREAM_PATHS[name]
        query = "?alt=sse" if protocol == "gemini" else ""
        replies = [stream_reply(name, TEXT, **v) for v in _clean_variants(name)]
    raised: Counter[str] = Counter()
    transport = RetryTransport(httpx.AsyncHTTPTransport(), policy=POLICY)
    limit = anyio.Semaphore(25)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        route = f"/clean/{protocol}/{index}{path}"
        up.script(route, replies[index % len(replies)])
        async with limit:
            try:
                async with client.stream("POST", up.url + route + query, json={}) as response:
                    async for _ in response.aiter_raw():
                        pass
            except Exception as exc:  # a false alarm, counted
                raised[type(exc).__name__] += 1

    started = time.perf_counter()
    async with (
        httpx.AsyncClient(transport=transport, timeout=30.0) as client,
        anyio.create_task_group() as group,
    ):
        for index in range(count):
            group.start_soon(one, client, index)
    return {
        "streams": count,
        "raised": sum(raised.values()),
        "errors": dict(raised),
        "seconds": time.perf_counter() - started,
    }


async def _run(turns: int, clean: int, seed: int) -> dict[str, Any]:
    with Upstream() as up:
        agent = await _agent_turns(up, turns, seed)
        streams = {p: await _clean(up, p, clean) for p in (*STREAM_PATHS, "cohere")}
    return {"seed": seed, "agent_turns": agent, "clean_streams": streams}


def main() -> None:
    """Run the soak and print its figures."""
    turns = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    clean = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 13
    result = anyio.run(_run, turns, clean, seed)
    agent = result["agent_turns"]
    print(
        f"{agent['turns']} agent turns, {agent['attempts']} attempts in {agent['seconds']:.1f} s: "
        f"{agent['attempts_by_fate']}",
        file=sys.stderr,
    )
    print(
        f"  answered: {agent['answered_turns_complete']}/{agent['answered_turns']} complete "
        f"({agent['turns_with_a_stall_or_pre_content_cut']} turns had a stall or a pre-content "
        f"cut); lost: {agent['answered_turns_lost']}",
        file=sys.stderr,
    )
    print(
        f"  mid-answer cuts: {agent['mid_answer_cuts_raised']}/{agent['mid_answer_cuts']} "
        f"raised {agent['mid_answer_cut_errors']}; partial returned as complete: "
        f"{agent['partial_returned_as_complete']}; out of attempts: "
        f"{agent['turns_out_of_attempts']}",
        file=sys.stderr,
    )
    for protocol, row in result["clean_streams"].items():
        print(
            f"  {row['streams']} clean {protocol} streams: {row['raised']} raised "
            f"{row['errors']} ({row['seconds']:.1f} s)",
            file=sys.stderr,
        )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
