"""Plugin manifests: valid ones load and resolve to ToolSpecs; invalid ones name file, line and field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cortex.adapters.tools.builtin import builtin_manifests
from cortex.errors import ManifestError
from cortex.manifests.plugin import load_plugin_manifest
from cortex.manifests.yaml_lines import load_yaml_with_lines

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "plugins" / "wordstats" / "plugin.yaml"

VALID = """\
name: notes
version: "2.1.0"
kind: custom
runtime: subprocess
description: Keep notes.
command: [./bin/notes, --quiet]
tools:
  - name: add
    description: Add a note.
    side_effects: write
    idempotent: false
    timeout_s: 5
    params:
      type: object
      properties:
        text: {type: string}
      required: [text]
  - name: search
    params: {type: object, properties: {q: {type: string}}}
permissions:
  network: [api.example.org, "*.cdn.example.org"]
  filesystem:
    read: [data]
    write: ["${NOTES_DIR:-/var/tmp/notes}"]
  env: [NOTES_TOKEN]
limits: {timeout_s: 12, memory_mb: 128, cpu_s: 4, processes: 8}
pool: tool.io
lane: notes
retry: {max_attempts: 3, backoff_s: 1}
"""


def write(tmp_path: Path, text: str, name: str = "plugin.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_valid_manifest_loads_and_resolves(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("NOTES_DIR", raising=False)
    manifest = load_plugin_manifest(write(tmp_path, VALID))
    identity = (manifest.name, manifest.version, manifest.kind, manifest.runtime)
    assert identity == ("notes", "2.1.0", "custom", "subprocess")
    assert manifest.directory == tmp_path.resolve()
    assert manifest.permissions.filesystem.read == (tmp_path.resolve() / "data",)
    assert manifest.permissions.filesystem.write == (Path("/var/tmp/notes"),)
    assert manifest.permissions.host_allowed("api.example.org")
    assert manifest.permissions.host_allowed("img.cdn.example.org")
    assert not manifest.permissions.host_allowed("example.org")
    assert not manifest.permissions.host_allowed("evil-api.example.org")

    add, search = (manifest.tool_spec(d) for d in manifest.tools)
    assert add.name == "notes.add" and add.plugin == "notes"
    assert (add.side_effects, add.idempotent, add.timeout_s) == ("write", False, 5.0)
    assert add.params_schema["required"] == ["text"]
    assert (search.side_effects, search.idempotent, search.timeout_s) == ("read_only", True, 12.0)
    assert (search.pool, search.lane, search.retry.max_attempts, search.retry.backoff_s) == ("tool.io", "notes", 3, 1.0)


def test_variables_are_expanded_from_the_environment(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NOTES_DIR", str(tmp_path / "notes"))
    manifest = load_plugin_manifest(write(tmp_path, VALID))
    assert manifest.permissions.filesystem.write == (tmp_path / "notes",)


def test_example_and_builtin_manifests_load(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CORTEX_HTTP_ALLOW", "example.org, *.wikipedia.org")
    monkeypatch.setenv("CORTEX_FILES_ROOT", str(tmp_path))
    assert load_plugin_manifest(EXAMPLE).name == "wordstats"
    builtins = {m.name: m for m in builtin_manifests()}
    assert set(builtins) == {"text", "files", "http", "calc", "time"}
    assert all(m.kind == "system" and m.runtime == "python" for m in builtins.values())
    assert builtins["http"].permissions.network == ("example.org", "*.wikipedia.org")
    assert builtins["files"].permissions.filesystem.read == (tmp_path,)


def test_http_builtin_grants_no_host_by_default(monkeypatch) -> None:
    monkeypatch.delenv("CORTEX_HTTP_ALLOW", raising=False)
    http = next(m for m in builtin_manifests() if m.name == "http")
    assert http.permissions.network == () and not http.permissions.network_granted


INVALID = [
    # (what is wrong, manifest text, line, field, message fragment)
    ("bad limit", VALID.replace("memory_mb: 128", "memory_mb: -5"), 26, "limits.memory_mb", "greater than 0"),
    ("unknown field", VALID.replace("pool: tool.io", "poool: tool.io"), 27, "poool", "Extra inputs"),
    (
        "bad side effects",
        VALID.replace("side_effects: write", "side_effects: maybe"),
        10,
        "tools.0.side_effects",
        "read_only",
    ),
    (
        "bad schema",
        VALID.replace("{type: object, properties: {q", "{type: 7, properties: {q"),
        19,
        "tools.1.params",
        "JSON schema",
    ),
    (
        "bad network",
        VALID.replace('network: [api.example.org, "*.cdn.example.org"]', "network: everything"),
        21,
        "permissions.network",
        "'none' or a list",
    ),
    (
        "unset variable",
        VALID.replace("${NOTES_DIR:-/var/tmp/notes}", "${NOTES_NOPE_UNSET}"),
        24,
        "permissions.filesystem.write",
        "NOTES_NOPE_UNSET",
    ),
    ("missing command", VALID.replace("command: [./bin/notes, --quiet]\n", ""), 1, "command", "needs a command"),
    ("bad plugin name", VALID.replace("name: notes", "name: My.Notes"), 1, "name", "pattern"),
    ("duplicate tool", VALID.replace("- name: search", "- name: add"), 7, "tools", "declared twice"),
    (
        "python for custom",
        "name: p\nversion: '1'\nkind: custom\nruntime: python\nmodule: x.y\n",
        4,
        "runtime",
        "kind: system",
    ),
    ("python without module", "name: p\nversion: '1'\nkind: system\nruntime: python\n", 1, "module", "dotted path"),
    ("docker without image", "name: p\nversion: '1'\nruntime: docker\n", 1, "image", "needs an image"),
    ("bad env name", VALID.replace("env: [NOTES_TOKEN]", "env: [NOTES-TOKEN]"), 25, "permissions.env", "NOTES-TOKEN"),
]


@pytest.mark.parametrize(("case", "text", "line", "field", "fragment"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_manifest_error_names_file_line_and_field(
    tmp_path: Path, case: str, text: str, line: int, field: str, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        load_plugin_manifest(path)
    message = str(caught.value)
    assert f"{path}:{line}: {field}: " in message, message
    assert fragment in message, message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nversion: '1'\ntools:\n  - name: [unclosed\nruntime: python\n")
    with pytest.raises(ManifestError, match=rf"{path}:5: invalid YAML"):
        load_plugin_manifest(path)


def test_manifest_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- just\n- a list\n")
    with pytest.raises(ManifestError, match=rf"{path}:1: .*mapping"):
        load_plugin_manifest(path)


def test_missing_file_is_a_manifest_error(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cannot read"):
        load_plugin_manifest(tmp_path / "absent.yaml")


def test_locator_walks_mappings_and_sequences(tmp_path: Path) -> None:
    path = write(tmp_path, "a:\n  b:\n    - x\n    - y: 1\n      z: 2\nc: 3\n")
    data, locate = load_yaml_with_lines(path)
    assert data == {"a": {"b": ["x", {"y": 1, "z": 2}]}, "c": 3}
    assert locate(("c",)) == 6
    assert locate(("a", "b", 1, "z")) == 5
    assert locate(("a", "b", 0)) == 3
    assert locate(("a", "missing", "deeper")) == 1
    assert locate(()) == 1
