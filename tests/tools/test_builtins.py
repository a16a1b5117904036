"""Built-in system plugins, loaded from their manifests and called through the python runtime."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from cortex.adapters.tools import CallContext, load_runtime
from cortex.adapters.tools.builtin import builtin_manifests
from cortex.adapters.tools.builtin.calc import safe_eval
from cortex.errors import ToolError

Call = Callable[[str, dict[str, Any]], Awaitable[Any]]


@pytest.fixture
def call() -> Callable[..., Awaitable[Call]]:
    """Start a built-in plugin by name (after env changes) and return a caller for its tools."""

    async def start(plugin: str) -> Call:
        manifest = next(m for m in builtin_manifests() if m.name == plugin)
        runtime = load_runtime(manifest)
        await runtime.start()

        async def run(tool: str, params: dict[str, Any]) -> Any:
            return await runtime.call(tool, params, CallContext())

        return run

    return start


# --- text -----------------------------------------------------------------------------------

PAGE = """<!doctype html><html><head><title> Cortex </title><style>p {color: red}</style></head>
<body><h1>Agents</h1><p>Run them <b>fast</b>.</p><script>alert("x")</script>
<ul><li>one</li><li>two <a href="https://example.org/two">link</a></li></ul></body></html>"""


async def test_text_extract_reads_html(call) -> None:
    text = await call("text")
    result = await text("text.extract", {"text": PAGE})
    assert result == {
        "text": "Agents\nRun them fast.\none\ntwo link",
        "title": "Cortex",
        "links": ["https://example.org/two"],
        "truncated": False,
    }
    assert (await text("text.extract", {"text": PAGE, "max_chars": 6}))["text"] == "Agents"


async def test_text_extract_plain_text_and_patterns(call) -> None:
    text = await call("text")
    plain = "Mail ada@example.org or bob@example.net. Call 555-0100."
    assert (await text("text.extract", {"text": plain}))["text"] == plain
    found = await text("text.extract", {"text": plain, "pattern": r"[\w.]+@[\w.]+\w"})
    assert found == {"matches": ["ada@example.org", "bob@example.net"], "count": 2}
    with pytest.raises(ToolError, match="bad pattern"):
        await text("text.extract", {"text": plain, "pattern": "(unclosed"})


async def test_text_count(call) -> None:
    text = await call("text")
    counts = await text("text.count", {"text": "héllo wörld\nsecond line\n", "substring": "l"})
    assert counts == {"chars": 24, "words": 4, "lines": 2, "bytes": 26, "occurrences": 4}
    assert (await text("text.count", {"text": ""}))["lines"] == 0


# --- files ----------------------------------------------------------------------------------


@pytest.fixture
def files_root(tmp_path: Path, monkeypatch) -> Path:
    """A granted root with files, a subdirectory and symlinks in and out; a secret outside it."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.txt").write_text("beta " * 100)
    (tmp_path / "secret.txt").write_text("do not read")
    (root / "leak").symlink_to(tmp_path / "secret.txt")
    (root / "inner").symlink_to(root / "a.txt")
    (root / "up").symlink_to(tmp_path)
    monkeypatch.setenv("CORTEX_FILES_ROOT", str(root))
    return root


async def test_files_read_and_list_inside_the_root(call, files_root: Path) -> None:
    files = await call("files")
    assert (await files("files.read", {"path": "a.txt"}))["content"] == "alpha\n"
    assert (await files("files.read", {"path": str(files_root / "sub" / "b.txt")}))["size"] == 500
    cut = await files("files.read", {"path": "sub/b.txt", "max_bytes": 10})
    assert (cut["content"], cut["truncated"]) == ("beta beta ", True)
    assert (await files("files.read", {"path": "inner"}))["content"] == "alpha\n"
    listing = await files("files.list", {})
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [
        ("a.txt", "file"),
        ("inner", "symlink"),
        ("leak", "symlink"),
        ("sub", "dir"),
        ("up", "symlink"),
    ]
    with pytest.raises(ToolError, match="is a directory"):
        await files("files.read", {"path": "sub"})


@pytest.mark.parametrize("path", ["../secret.txt", "sub/../../secret.txt", "leak", "up/secret.txt", "/etc/passwd"])
async def test_files_refuse_escapes(call, files_root: Path, path: str) -> None:
    files = await call("files")
    with pytest.raises(ToolError, match="outside the granted directories"):
        await files("files.read", {"path": path})


async def test_files_refuse_listing_outside(call, files_root: Path) -> None:
    files = await call("files")
    for path in ("..", "up", "/"):
        with pytest.raises(ToolError, match="outside the granted directories"):
            await files("files.list", {"path": path})


# --- http -----------------------------------------------------------------------------------


@pytest.fixture
async def web_server() -> AsyncIterator[tuple[int, list[str]]]:
    """A local aiohttp server on 127.0.0.1; yields its port and the paths it was asked for."""
    seen: list[str] = []

    async def hello(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(text="hello from aiohttp", content_type="text/plain")

    async def redirect(request: web.Request) -> web.Response:
        seen.append(request.path)
        port = request.url.port
        target = {"in": f"http://127.0.0.1:{port}/hello", "out": f"http://localhost:{port}/hello"}
        raise web.HTTPFound(target[request.match_info["where"]])

    async def big(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(body=b"x" * 5000)

    app = web.Application()
    app.add_routes([web.get("/hello", hello), web.get("/redirect/{where}", redirect), web.get("/big", big)])
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, seen
    await runner.cleanup()


async def test_http_fetch_allowed_host(call, web_server, monkeypatch) -> None:
    port, seen = web_server
    monkeypatch.setenv("CORTEX_HTTP_ALLOW", "127.0.0.1")
    fetch = await call("http")
    result = await fetch("http.fetch", {"url": f"http://127.0.0.1:{port}/hello"})
    assert (result["status"], result["body"], result["truncated"]) == (200, "hello from aiohttp", False)
    assert result["content_type"].startswith("text/plain")
    followed = await fetch("http.fetch", {"url": f"http://127.0.0.1:{port}/redirect/in"})
    assert followed["url"] == f"http://127.0.0.1:{port}/hello" and followed["body"] == "hello from aiohttp"
    cut = await fetch("http.fetch", {"url": f"http://127.0.0.1:{port}/big", "max_bytes": 100})
    assert (len(cut["body"]), cut["truncated"]) == (100, True)
    assert seen == ["/hello", "/redirect/in", "/hello", "/big"]


async def test_http_fetch_refuses_hosts_off_the_allowlist(call, web_server, monkeypatch) -> None:
    port, seen = web_server
    monkeypatch.setenv("CORTEX_HTTP_ALLOW", "127.0.0.1")
    fetch = await call("http")
    with pytest.raises(ToolError, match="'localhost' is not on the plugin's allowlist"):
        await fetch("http.fetch", {"url": f"http://localhost:{port}/hello"})
    with pytest.raises(ToolError, match="'localhost' is not on the plugin's allowlist"):
        await fetch("http.fetch", {"url": f"http://127.0.0.1:{port}/redirect/out"})
    with pytest.raises(ToolError, match="only http and https"):
        await fetch("http.fetch", {"url": "file:///etc/passwd"})
    assert seen == ["/redirect/out"]  # the refused hop was never sent


async def test_http_fetch_refuses_everything_without_grant(call, web_server, monkeypatch) -> None:
    port, seen = web_server
    monkeypatch.delenv("CORTEX_HTTP_ALLOW", raising=False)
    fetch = await call("http")
    with pytest.raises(ToolError, match="not on the plugin's allowlist"):
        await fetch("http.fetch", {"url": f"http://127.0.0.1:{port}/hello"})
    assert seen == []


# --- calc -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "value"),
    [
        ("2 * (3 + 4) ** 2", 98),
        ("7 // 2 + 7 % 2", 4),
        ("-2 ** 2", -4),
        ("2 ** -1", 0.5),
        ("sqrt(16) + abs(-2)", 6.0),
        ("max(1, 5, 3) - min(4, 2)", 3),
        ("round(pi, 3)", 3.142),
        ("2 ** 4000 // 2 ** 3999", 2),
        ("1" + " + 1" * 60, 61),
    ],
)
async def test_calc_evaluates_arithmetic(call, expression: str, value: float) -> None:
    calc = await call("calc")
    assert await calc("calc.eval", {"expression": expression}) == {"value": value}


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("__import__('os')", "unknown function '__import__'"),
        ("__import__('os').system('id')", "Call is not allowed"),
        ("().__class__.__bases__", "Attribute is not allowed"),
        ("open('/etc/passwd')", "unknown function 'open'"),
        ("x + 1", "unknown name 'x'"),
        ("9 ** 9 ** 9", "too large"),
        ("2 ** 10 ** 10", "too large"),
        ("10 ** 5000", "too large"),
        ("(2 ** 4000) * (2 ** 4000)", "too large"),
        ("1e308 * 10", "not a finite number"),
        ("10.0 ** 400", "Numerical result out of range"),
        ("(-8) ** 0.5", "not a real number"),
        ("1 / 0", "division by zero"),
        ("'a' * 10", "only numbers"),
        ("True + 1", "only numbers"),
        ("lambda: 1", "Lambda is not allowed"),
        ("[1, 2]", "List is not allowed"),
        ("sqrt(-1)", "math domain error"),
        ("max()", "max"),
        ("1 +", "not an arithmetic expression"),
        ("-" * 150 + "1", "nested deeper"),
        ("1+" * 600 + "1", "limited to 1000 characters"),
    ],
)
async def test_calc_refuses(call, expression: str, fragment: str) -> None:
    calc = await call("calc")
    with pytest.raises(ToolError, match="calc") as caught:
        await calc("calc.eval", {"expression": expression})
    assert fragment in str(caught.value)


small_ints = st.integers(min_value=-50, max_value=50).map(str)
expressions = st.recursive(
    small_ints,
    lambda inner: st.tuples(inner, st.sampled_from(["+", "-", "*"]), inner).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(expressions)
def test_calc_agrees_with_python_on_integer_arithmetic(expression: str) -> None:
    assert safe_eval(expression) == eval(expression)  # noqa: S307 - the oracle, on generated input only


# --- time -----------------------------------------------------------------------------------


async def test_time_now_in_a_timezone(call) -> None:
    clock = await call("time")
    result = await clock("time.now", {"timezone": "Asia/Tokyo"})
    moment = datetime.fromisoformat(result["iso"])
    assert result["utc_offset"] == "+0900" and moment.utcoffset().total_seconds() == 9 * 3600
    assert abs(result["unix"] - time.time()) < 60 and result["weekday"] == moment.strftime("%A")
    assert (await clock("time.now", {}))["utc_offset"] == "+0000"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", os.sep])
async def test_time_now_refuses_unknown_timezones(call, zone: str) -> None:
    clock = await call("time")
    with pytest.raises(ToolError, match="unknown timezone"):
        await clock("time.now", {"timezone": zone})


async def test_time_wait_waits_and_refuses_long_waits(call) -> None:
    clock = await call("time")
    started = time.monotonic()
    result = await clock("time.wait", {"seconds": 0.2})
    assert time.monotonic() - started >= 0.2 and result["waited_s"] >= 0.2
    with pytest.raises(Exception, match="30"):
        await clock("time.wait", {"seconds": 31})
