"""Command line: ``python -m retry_transport demo | rules | classify | proxy | vendor``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._cli_classify import add_arguments as add_classify_arguments
from ._vendor import add_arguments as add_vendor_arguments
from ._vendor import run as run_vendor
from .proxy.cli import add_arguments as add_proxy_arguments
from .proxy.cli import run as run_proxy

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m retry_transport`` and the ``retry-transport`` script."""
    parser = argparse.ArgumentParser(
        prog="retry-transport",
        description="Transport-level retries for httpx and httpx2 clients.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo",
        help="run the flaky-upstream scenarios with and without RetryTransport",
    )
    commands.add_parser(
        "rules",
        help="print the classifier's signature table (Markdown), as the README shows it",
    )
    classify = commands.add_parser(
        "classify",
        help="show how an error body would be classified (verdict, rule or field, wait)",
    )
    add_classify_arguments(classify)
    proxy = commands.add_parser(
        "proxy",
        help="run a local retry sidecar in front of an LLM provider (needs the proxy extra)",
    )
    add_proxy_arguments(proxy)
    vendor = commands.add_parser(
        "vendor",
        help="copy this package into another project (or --check such a copy)",
    )
    add_vendor_arguments(vendor)
    args = parser.parse_args(argv)
    if args.command == "vendor":
        return run_vendor(args, vendor)
    if args.command == "proxy":
        return run_proxy(args, proxy)
    if args.command == "classify":
        from ._cli_classify import run as run_classify

        return run_classify(args)
    if args.command == "demo":
        from ._demo import run_demo

        run_demo(sys.stdout)
    else:  # "rules": the parser admits no other command
        from ._signatures import rules_markdown

        sys.stdout.write(rules_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())
