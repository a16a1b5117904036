"""Built-in system plugins (text, files, http, calc, time): python-runtime modules with a manifest each."""

from __future__ import annotations

from pathlib import Path

from cortex.manifests.plugin import PluginManifest, load_plugin_manifest

BUILTIN_DIR = Path(__file__).resolve().parent


def builtin_manifests() -> list[PluginManifest]:
    """The manifests of every built-in plugin, loaded (and variable-expanded) now."""
    return [load_plugin_manifest(path) for path in sorted(BUILTIN_DIR.glob("*.yaml"))]
