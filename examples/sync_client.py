"""SyncRetryTransport under a plain httpx.Client, with a 429 that names its Retry-After.

Run: python examples/sync_client.py [BASE_URL]
Without BASE_URL it starts the demo's embedded flaky upstream.
"""

from __future__ import annotations

import sys

import httpx

from retry_transport import SyncRetryTransport
from retry_transport.testing.upstream import Reply, Upstream


def main(base_url: str) -> None:
    with httpx.Client(transport=SyncRetryTransport(), base_url=base_url) as client:
        response = client.get("/v1/models")
    history = response.extensions["retry_history"]
    print(f"final status: {response.status_code} after {len(history)} attempts")
    print(f"waited {history[0].delay:.1f}s, as the server's Retry-After asked")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with Upstream() as upstream:
            upstream.script("/v1/models", Reply(429, headers=(("retry-after", "1"),)), Reply(200))
            main(upstream.url)
