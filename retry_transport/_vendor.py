"""``retry-transport vendor``: copy this package into another project, and check such a copy.

The copy is made from the package's own files (read through `importlib.resources`, so it works
from an installed wheel, from a checkout and from an earlier copy, with no network). Its record,
``VENDORED.json`` inside the copy, names the version, the options used and the SHA-256 of every
file written, so ``vendor --check`` can tell a hand edit from the release.

``--without NAME`` drops a part of the package: the top-level module or sub-package ``NAME``
(or ``_NAME``, ``_NAME_*``), every module that imports a dropped one, and every private module
that only dropped modules used. The package imports itself relatively only, so a copy under
another name needs no rewriting; a file with an absolute self-import is refused.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import keyword
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TextIO

from . import __version__

__all__ = ["RECORD", "VendorError", "VendorPlan", "add_arguments", "check", "plan", "run", "write"]

RECORD = "VENDORED.json"
"""The record's file name, inside the copy."""

DISTRIBUTION = "retry-transport"
_LICENSE = "LICENSE"
_SKIPPED_DIRS = frozenset({"__pycache__"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")
_PACKAGE = __name__.rpartition(".")[0]


class VendorError(Exception):
    """A copy cannot be made as asked (the message says why)."""


@dataclass(frozen=True, slots=True)
class VendorPlan:
    """What a copy holds: file contents by relative path, and the parts left out."""

    files: Mapping[str, bytes]
    dropped: tuple[str, ...]
    without: tuple[str, ...]


# ---------------------------------------------------------------------------------------------
# Planning: which files go into the copy


def _walk(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda item: item.name):
        path = prefix + entry.name
        if entry.is_dir():
            if entry.name not in _SKIPPED_DIRS:
                yield from _walk(entry, path + "/")
        elif not entry.name.endswith(_SKIPPED_SUFFIXES) and path != RECORD:
            yield path, entry


def _group(path: str) -> str:
    """The top-level part a file is in: ``proxy`` for ``proxy/app.py``, ``_x`` for ``_x.py``."""
    head = path.split("/", 1)[0]
    return head.removesuffix(".py")


def _module_of(path: str) -> tuple[str, ...]:
    parts = tuple(path.removesuffix(".py").split("/"))
    return parts[:-1] if parts[-1] == "__init__" else parts


def _imports(path: str, source: bytes, package: str) -> set[str]:
    """The top-level parts that the module at ``path`` imports (relatively)."""
    tree = ast.parse(source, filename=path)
    module = _module_of(path)
    here = module if path.endswith("__init__.py") else module[:-1]
    parts: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
            target = (*base, *(node.module.split(".") if node.module else ()))
            parts.update(target[:1] or [alias.name for alias in node.names])
            continue
        else:
            continue
        for name in names:
            if name == package or name.startswith(package + "."):
                raise VendorError(
                    f"{path}: absolute self-import of {name!r} on line {node.lineno}; "
                    "the package must import itself relatively to be copied under another name"
                )
    return parts


def _matches(name: str, group: str) -> bool:
    return group in (name, "_" + name) or group.startswith(f"_{name}_")


def plan(
    root: Traversable, without: Sequence[str] = (), *, package: str | None = None
) -> VendorPlan:
    """Choose the files of a copy of the package at ``root``, leaving out the parts ``without``.

    ``package`` is the package's import name (default: ``root``'s name), used to recognise
    absolute self-imports. Raises `VendorError` for an unknown part, a part the package cannot
    do without, or an absolute self-import.
    """
    package = package or root.name
    contents = {path: entry.read_bytes() for path, entry in _walk(root)}
    groups: dict[str, set[str]] = {}
    for path, data in contents.items():
        uses = _imports(path, data, package) if path.endswith(".py") else set()
        groups.setdefault(_group(path), set()).update(uses)
    modules = {group for group in groups if any(p.endswith(".py") for p in _paths(contents, group))}
    dropped: set[str] = set()
    for name in without:
        found = {group for group in modules if _matches(name, group) and group != "__init__"}
        if not found:
            raise VendorError(f"--without: no part named {name!r} in {package}")
        dropped |= found
    changed = True
    while changed:  # whatever imports a dropped part goes too
        changed = False
        for group in sorted(modules - dropped):
            lost = sorted(groups[group] & dropped)
            if lost:
                if group == "__init__":
                    raise VendorError(
                        f"--without {','.join(without)}: the package itself needs {lost[0]}"
                    )
                dropped.add(group)
                changed = True
    roots = [g for g in modules - dropped if not g.startswith("_") or g in ("__init__", "__main__")]
    kept: set[str] = set()
    todo = list(roots)
    while todo:  # and whatever only the dropped parts used
        group = todo.pop()
        if group not in kept:
            kept.add(group)
            todo.extend(used for used in groups[group] if used in modules)
    dropped |= modules - kept
    chosen = {path: data for path, data in contents.items() if _group(path) not in dropped}
    return VendorPlan(chosen, tuple(sorted(dropped)), tuple(without))


def _paths(contents: Mapping[str, bytes], group: str) -> list[str]:
    return [path for path in contents if _group(path) == group]


# ---------------------------------------------------------------------------------------------
# Writing and checking


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _licence(root: Traversable) -> bytes:
    inside = root / _LICENSE
    if inside.is_file():  # a wheel ships it inside the package
        return inside.read_bytes()
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / _LICENSE).is_file():
        return (checkout / _LICENSE).read_bytes()
    raise VendorError(f"no {_LICENSE} found in {root} or beside it; the copy must carry it")


def write(
    dest: Path,
    package: str,
    chosen: VendorPlan,
    *,
    licence: bytes,
    source: str,
) -> Path:
    """Write ``chosen`` to ``dest/package`` with the licence and a record; returns the copy."""
    target = dest / package
    if target.exists():
        if not (target / RECORD).is_file():
            raise VendorError(f"{target} exists and is no vendored copy (no {RECORD}): remove it")
        shutil.rmtree(target)
    payload = {_LICENSE: licence, **chosen.files}
    for path, data in sorted(payload.items()):
        out = target / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)
    record = {
        "distribution": DISTRIBUTION,
        "version": __version__,
        "package": package,
        "source_package": source,
        "without": list(chosen.without),
        "dropped": list(chosen.dropped),
        "files": {path: _digest(data) for path, data in sorted(payload.items())},
    }
    (target / RECORD).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target


def _find_records(dest: Path, package: str | None) -> list[Path]:
    """The copies to check: ``dest`` itself if it is one, else ``dest/package`` if a package
    is named, else every copy directly under ``dest``."""
    if (dest / RECORD).is_file():
        return [dest]
    if package is not None:
        found = [dest / package] if (dest / package / RECORD).is_file() else []
    else:
        found = sorted(path.parent for path in dest.glob(f"*/{RECORD}"))
    if not found:
        raise VendorError(f"no vendored copy (a directory with {RECORD}) found in {dest}")
    return found


def check(copy: Path) -> list[str]:
    """Compare the copy in ``copy`` with its record: one line per changed, missing or extra file."""
    record = json.loads((copy / RECORD).read_text(encoding="utf-8"))
    expected: dict[str, str] = record["files"]
    present = {
        path.relative_to(copy).as_posix(): path
        for path in copy.rglob("*")
        if path.is_file()
        and not _SKIPPED_DIRS.intersection(path.relative_to(copy).parts)
        and not path.name.endswith(_SKIPPED_SUFFIXES)
        and path.relative_to(copy).as_posix() != RECORD
    }
    problems = [
        f"changed: {name}"
        for name, digest in sorted(expected.items())
        if name in present and _digest(present[name].read_bytes()) != digest
    ]
    problems += [f"missing: {name}" for name in sorted(expected) if name not in present]
    problems += [f"unexpected: {name}" for name in sorted(present) if name not in expected]
    return problems


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``vendor`` command's arguments."""
    parser.add_argument(
        "dest", nargs="?", type=Path, help="directory to write the copy into, as DEST/NAME"
    )
    parser.add_argument(
        "--package",
        default=None,
        metavar="NAME",
        help="the copy's import name (default: retry_transport); with --check, the copy to "
        "verify (default: every copy in DEST)",
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        metavar="PARTS",
        help="comma-separated parts to leave out, e.g. proxy,testing,demo",
    )
    parser.add_argument(
        "--check",
        type=Path,
        metavar="DEST",
        help="verify an existing copy (DEST or DEST/NAME) against its record instead",
    )


def run(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the ``vendor`` command; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    named: str | None = args.package
    package = "retry_transport" if named is None else named
    if not package.isidentifier() or keyword.iskeyword(package):
        parser.error(f"--package must be a Python identifier and not a keyword, got {package!r}")
    if (args.dest is None) == (args.check is None):
        parser.error("give either DEST (to write a copy) or --check DEST (to verify one)")
    try:
        if args.check is not None:
            return _run_check(args.check, named, out, err)
        without = [name.strip() for item in args.without for name in item.split(",") if name]
        root = files(_PACKAGE)
        chosen = plan(root, without, package=_PACKAGE)
        target = write(args.dest, package, chosen, licence=_licence(root), source=_PACKAGE)
    except VendorError as exc:
        err.write(f"retry-transport vendor: {exc}\n")
        return 2
    parts = f"; without {', '.join(chosen.dropped)}" if chosen.dropped else ""
    out.write(
        f"vendored {DISTRIBUTION} {__version__} into {target} "
        f"({len({_LICENSE, *chosen.files})} files{parts})\n"
    )
    if not (args.dest / "__init__.py").is_file():
        err.write(
            f"note: {args.dest} has no __init__.py: add an empty one, so that the copy "
            f"imports as {package!r} inside the package {args.dest.name!r} "
            f"(not needed if {args.dest} is itself on sys.path)\n"
        )
    return 0


def _run_check(dest: Path, package: str | None, out: TextIO, err: TextIO) -> int:
    status = 0
    for copy in _find_records(dest, package):
        problems = check(copy)
        if problems:
            err.write(f"{copy} differs from its record ({RECORD}):\n")
            err.writelines(f"  {line}\n" for line in problems)
            status = 1
            continue
        record = json.loads((copy / RECORD).read_text(encoding="utf-8"))
        out.write(
            f"{copy}: {len(record['files'])} files match {DISTRIBUTION} {record['version']}\n"
        )
    return status
