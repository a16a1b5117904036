"""``import:`` by relative path, file:// and https:// (a real local TLS server); merging; cycles; folders."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from cortex.errors import ManifestError
from cortex.manifests.agent import resolve_agent
from cortex.manifests.loader import load_file, load_manifests
from tests.manifests.conftest import Write

BASE = """
    kind: agent
    name: base
    provider: scripted
    model: base-model
    system_prompt: Be brief.
    tools: ["text.*"]
    provider_options: {temperature: 0.1, seed: 7}
    limits: {max_iterations: 3, max_tokens: 256}
"""


async def test_imports_merge_under_the_importing_document(write: Write) -> None:
    write("shared/base.yaml", BASE)
    write("shared/tools.yaml", 'tools: [calc.eval, "text.*"]\nexamples: ["<response final=\\"true\\">ok</response>"]\n')
    path = write(
        "agents/researcher.yaml",
        """
        kind: agent
        name: researcher
        import: [../shared/base.yaml, ../shared/tools.yaml]
        model: own-model
        tools: [files.read]
        provider_options: {temperature: 0.5}
        limits: {max_parallel_actions: 2}
        """,
    )
    loaded = await load_file(path)
    # an imported complete manifest is a manifest of its own too; the importing one comes last
    assert [(m.kind, m.name) for m in loaded] == [("agent", "base"), ("agent", "researcher")]
    agent = loaded[-1].manifest
    assert agent.name == "researcher"  # name is never inherited
    assert agent.model == "own-model"  # scalars of the importing document win
    assert agent.provider == "scripted" and agent.system_prompt == "Be brief."  # the rest is inherited
    assert agent.tools == ("text.*", "calc.eval", "files.read")  # lists concatenated, duplicates dropped
    assert agent.provider_options == {"temperature": 0.5, "seed": 7}  # mappings merged key by key
    assert (agent.limits.max_iterations, agent.limits.max_tokens, agent.limits.max_parallel_actions) == (3, 256, 2)
    spec = await resolve_agent(agent)
    assert [t.name for t in spec.tools] == ["text.extract", "text.count", "calc.eval", "files.read"]


async def test_file_urls_are_absolute(write: Write) -> None:
    base = write("elsewhere/base.yaml", BASE)
    path = write("a.yaml", f"kind: agent\nname: a\nimport: ['{base.as_uri()}']\n")
    [_, agent] = await load_file(path)
    assert agent.manifest.model == "base-model"


async def test_an_error_in_an_imported_document_names_that_document(write: Write) -> None:
    write("base.yaml", "limits:\n  max_iterations: 0\n")
    path = write("a.yaml", "kind: agent\nname: a\nimport: [base.yaml]\n")
    with pytest.raises(ManifestError, match=r"base\.yaml:2: limits\.max_iterations: Input should be greater"):
        await load_file(path)


async def test_import_cycles_are_errors_naming_the_import_line(
    write: Write, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # paths inside the current folder are shown relative to it
    write("b.yaml", "import: [c.yaml]\n")
    write("c.yaml", "tools: [calc.eval]\nimport:\n  - b.yaml\n")
    path = write("a.yaml", "kind: agent\nname: a\nimport: [b.yaml]\n")
    with pytest.raises(ManifestError) as caught:
        await load_file(path)
    assert str(caught.value) == "c.yaml:3: import.0: import cycle: a.yaml -> b.yaml -> c.yaml -> b.yaml"


async def test_a_missing_import_names_the_importing_file(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\nimport: [nowhere.yaml]\n")
    with pytest.raises(ManifestError, match=r"nowhere\.yaml: cannot read manifest"):
        await load_file(path)


async def test_unsupported_schemes_are_refused(write: Write) -> None:
    path = write("a.yaml", "kind: agent\nname: a\nimport:\n  - ftp://example.org/x.yaml\n")
    with pytest.raises(ManifestError, match=r"a\.yaml:4: import\.0: only relative paths, file:// and https://"):
        await load_file(path)


# ---- https -------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (made with openssl)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.fixture
async def https_server(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[str]:
    """A real HTTPS server on localhost serving manifests; httpx trusts its certificate through SSL_CERT_FILE."""
    import ssl

    cert, key = certificate
    documents = {
        "/agents/base.yaml": BASE,
        "/agents/remote.yaml": "kind: agent\nname: remote\nimport: [base.yaml]\nmodel: remote-model\n",
        "/agents/broken.yaml": "kind: agent\nname: broken\nlimits:\n  max_tokens: -1\n",
    }

    async def serve(request: web.Request) -> web.Response:
        text = documents.get(request.path)
        return web.Response(text=text) if text else web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, "localhost", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    try:
        yield f"https://localhost:{port}"
    finally:
        await runner.cleanup()


async def test_https_imports_and_their_relative_imports(write: Write, https_server: str) -> None:
    path = write("a.yaml", f"kind: agent\nname: a\nimport: ['{https_server}/agents/remote.yaml']\n")
    loaded = await load_file(path)
    assert [(m.name, m.source) for m in loaded] == [
        ("base", f"{https_server}/agents/base.yaml"),
        ("remote", f"{https_server}/agents/remote.yaml"),
        ("a", "a.yaml" if Path.cwd() == path.parent else str(path)),
    ]
    assert loaded[-1].manifest.model == "remote-model"  # from remote.yaml, which imported base.yaml


async def test_https_errors_name_the_url_and_line(write: Write, https_server: str) -> None:
    path = write("a.yaml", f"kind: agent\nname: a\nimport: ['{https_server}/agents/broken.yaml']\n")
    with pytest.raises(ManifestError, match=rf"{https_server}/agents/broken.yaml:4: limits.max_tokens"):
        await load_file(path)
    missing = write("b.yaml", f"kind: agent\nname: b\nimport: ['{https_server}/agents/none.yaml']\n")
    with pytest.raises(ManifestError, match=r"none\.yaml: cannot fetch manifest: .*404"):
        await load_file(missing)


# ---- folders -----------------------------------------------------------------------------


async def test_a_folder_loads_every_manifest_and_skips_fragments(write: Write, tmp_path: Path) -> None:
    write("agents/base.yaml", BASE)
    write("agents/a.yaml", "kind: agent\nname: a\nimport: [base.yaml, ../shared/tools.yaml]\n")
    write("shared/tools.yaml", "tools: [calc.eval]\n")
    write("plugins/ws.yaml", "name: ws\nversion: '1'\nkind: plugin\nruntime: subprocess\ncommand: [x]\n")
    write(".hidden/x.yaml", "kind: agent\nname: hidden\n")
    loaded = await load_manifests(tmp_path)
    assert sorted((m.kind, m.name) for m in loaded) == [("agent", "a"), ("agent", "base"), ("plugin", "ws")]


async def test_a_folder_reports_every_broken_file_and_duplicate_names(write: Write, tmp_path: Path) -> None:
    write("one.yaml", "kind: agent\nname: same\n")
    write("two.yaml", "kind: agent\nname: same\n")
    with pytest.raises(ManifestError, match="agent 'same' is also defined in"):
        await load_manifests(tmp_path)
    write("two.yaml", "kind: agent\nname: two\nlimits: {max_tokens: 0}\n")
    write("three.yaml", "kind: agent\nname: three\nprovider: nobody\n")
    with pytest.raises(ManifestError) as caught:
        await load_manifests(tmp_path)
    assert "three.yaml:3: provider" in str(caught.value) and "two.yaml:3: limits.max_tokens" in str(caught.value)
