"""``cortex validate PATH`` and ``cortex apply PATH``: check manifests, and store them for every process."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cortex.bus.client import Bus
from cortex.errors import ManifestError
from cortex.manifests.apply import apply_manifests, resolve_all
from cortex.manifests.loader import is_fragment, load_file, load_manifests, manifest_files


def register(sub: argparse._SubParsersAction) -> None:
    """Add the validate and apply commands."""
    validate = sub.add_parser(
        "validate",
        help="check manifests (a file or a folder) without applying them",
        description="Load every manifest at PATH with its imports, validate it and resolve agents' tools. "
        "Prints each manifest as OK or its errors (file:line: field: problem); exits 1 on any error.",
    )
    validate.add_argument("path", help="a manifest file or a folder of them")
    validate.add_argument("--json", action="store_true", help="print the results as JSON")
    validate.set_defaults(func=cmd_validate)

    apply = sub.add_parser(
        "apply",
        help="validate manifests and store them in the cortex_manifests KV bucket",
        description="Validate and resolve every manifest at PATH (a file or a folder), then store what "
        "changed so that every kernel and worker sees the same version, and publish manifest.applied "
        "on cortex.sys.manifest.applied. Nothing is stored if any manifest is invalid.",
    )
    apply.add_argument("path", help="a manifest file or a folder of them")
    apply.add_argument("--json", action="store_true", help="print the results as JSON")
    apply.set_defaults(func=cmd_apply)


async def check_file(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Load and resolve one file: (manifests found, error messages)."""
    try:
        loaded = await load_file(path)
        await resolve_all(loaded)
    except ManifestError as exc:
        return [], str(exc).splitlines()
    return [{"kind": m.kind, "name": m.name, "source": m.source} for m in loaded], []


async def cmd_validate(args: argparse.Namespace) -> int:
    """Validate each file; report per file; exit 1 if anything is wrong."""
    console = Console(highlight=False)
    results = []
    folder = Path(args.path).is_dir()
    for file in manifest_files(args.path):
        if folder and is_fragment(file):
            results.append({"file": str(file), "ok": True, "manifests": [], "errors": [], "fragment": True})
            continue
        manifests, errors = await check_file(str(file))
        results.append({"file": str(file), "ok": not errors, "manifests": manifests, "errors": errors})
    if all(r["ok"] for r in results):
        try:  # names must also be unique across files
            await load_manifests(args.path)
        except ManifestError as exc:
            results.append({"file": args.path, "ok": False, "manifests": [], "errors": str(exc).splitlines()})
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if result.get("fragment"):
                console.print(f"[dim]-[/] {escape(result['file'])} [dim](fragment: used through import)[/]")
            for manifest in result["manifests"]:
                console.print(f"[green]✓[/] {manifest['kind']} [bold]{escape(manifest['name'])}[/] "
                              f"[dim]{escape(manifest['source'])}[/]")
            for line in result["errors"]:
                console.print(f"[red]✗[/] {escape(line)}")
    return 0 if all(r["ok"] for r in results) else 1


async def cmd_apply(args: argparse.Namespace) -> int:
    """Apply and print what changed."""
    bus = await Bus.from_env(name="cortex-apply")
    try:
        await bus.provision()
        results = await apply_manifests(bus, args.path)
    finally:
        await bus.close()
    if args.json:
        print(json.dumps([r.__dict__ for r in results], indent=2))
        return 0
    table = Table("kind", "name", "change", "revision", "digest", "source", box=None)
    styles = {"created": "green", "updated": "yellow", "unchanged": "dim"}
    for r in results:
        table.add_row(r.kind, r.name, f"[{styles[r.change]}]{r.change}[/]", str(r.revision), r.digest, escape(r.source))
    console = Console(highlight=False)
    console.print(table)
    changed = sum(1 for r in results if r.change != "unchanged")
    console.print(f"{changed} changed, {len(results) - changed} unchanged")
    return 0
