"""Every ```python block of README.md and docs/**/*.md runs, on both backends.

CONTRIBUTING: how to write a code block in the docs so that it runs here
=======================================================================

* Every fenced block whose info string starts with ``python`` is executed. New pages under
  docs/ are picked up automatically; a failure names the file and the line of the block
  (tracebacks point into the Markdown file itself).
* **One namespace per page** (per file, see ``title``), blocks in page order: a page may
  build a program step by step (define ``Counter`` in one block, use it in the next). Each
  page starts from a fresh namespace whose ``__name__`` is ``"__main__"``, so
  ``if __name__ == "__main__": otp.run(main)`` runs.
* ``otp.run(main)`` runs on the backend under test, whatever ``backend=`` the block gives:
  a page with any async code runs once per backend (asyncio and trio), others once.
* A block may use top-level ``await`` / ``async with`` (a fragment of async code): it runs
  in an event loop of its own, on the backend under test; names it binds stay in the
  page's namespace.
* ``async def test_*`` functions (and plain ``def test_*``) that a block defines are run
  after the block, pytest style, with the fixtures ``otp_node`` (a running node) and
  ``tmp_path``.
* ``title="shop.py"`` in the info string (```` ```python title="shop.py" ````, which the
  docs render as a file name) puts a block in that file: blocks of one title share a
  namespace, and the file is importable by later blocks (``from shop import ...``; then
  ``__name__`` is ``"shop"`` and its ``if __name__ == "__main__":`` part does not run).
* Blocks that use Redis (``RedisBroker``, ``otp.redis``) run against the test suite's Redis
  (see tests/_redis_support.py; the URL in the block is replaced by it and the ``prefix``
  made unique) and their page skips with the reason when there is none.
* Opt out, only for a block that truly cannot run here (it needs another host, say), with
  ```` ```python {.no-run} ```` and say why in the text around it. Do not write
  ```` ```python no-run ````: MkDocs' superfences does not recognise that fence, and the
  block renders as garbage (this test refuses it).
* Signatures are not programs: show ``publish(topic, message, *, sender=None)`` in a
  ```` ```text ```` block or in prose.
* Type checking: ``python -m tests.test_docs --mypy`` (run by .ci/run) checks the same blocks
  with plain mypy (``--check-untyped-defs``; not --strict, so snippets may leave callbacks
  unannotated), each page as one module with its lines where they are in the page, so an
  error names the page and line. tests/typing/ checks typed user programs strictly.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import otp
from tests._redis_support import redis_url  # noqa: F401  (a fixture)

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_TITLE = re.compile(r"""title=["']([^"']+)["']""")
_CO_COROUTINE = inspect.CO_COROUTINE
_NEEDS_REDIS = ("RedisBroker", "otp.redis", "broker.consume(")


@attrs.frozen
class Block:
    path: Path
    line: int  # of the first line of code (1-based)
    info: str
    code: str

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{self.line}"

    @property
    def is_python(self) -> bool:
        words = self.info.split()
        return bool(words) and words[0] in ("python", "py", "{.python")

    @property
    def no_run(self) -> bool:
        return ".no-run" in self.info

    @property
    def title(self) -> str | None:
        found = _TITLE.search(self.info)
        return found.group(1) if found else None

    @property
    def needs_redis(self) -> bool:
        return any(needle in self.code for needle in _NEEDS_REDIS)

    @property
    def is_async(self) -> bool:
        return any(
            needle in self.code for needle in ("otp.run(", "await ", "async with", "async def")
        )


def extract(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (any language), in order."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, fence, info = opening["indent"], opening["fence"], opening["info"].strip()
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (
                closing is not None
                and closing["fence"][0] == fence[0]
                and len(closing["fence"]) >= len(fence)
                and not closing["info"].strip()
            ):
                break
            text = lines[j]
            body.append(text[len(indent) :] if text.startswith(indent) else text.lstrip())
            j += 1
        blocks.append(Block(path, i + 2, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


def _python_blocks(path: Path) -> list[Block]:
    return [b for b in extract(path) if b.is_python]


def _params() -> list[Any]:
    params = []
    for page in PAGES:
        blocks = _python_blocks(page)
        if not blocks:
            continue
        name = str(page.relative_to(ROOT))
        if any(b.is_async for b in blocks if not b.no_run):
            params += [pytest.param(page, b, id=f"{name}-{b}") for b in ("asyncio", "trio")]
        else:
            params.append(pytest.param(page, "asyncio", id=name))
    return params


def test_every_page_is_found_and_fences_are_well_formed() -> None:
    assert ROOT / "docs" / "tutorial.md" in PAGES
    problems = []
    for page in PAGES:
        for block in extract(page):
            words = block.info.split()
            if block.is_python and "no-run" in words:
                problems.append(
                    f"{block.where}: write ```python {{.no-run}}, not ```python no-run "
                    "(superfences does not render that fence)"
                )
    assert not problems, "\n".join(problems)


class _Failed(Exception):
    pass


def _run_test_function(
    function: Callable[..., Any], backend: str, tmp_path: Path, block: Block
) -> None:
    parameters = inspect.signature(function).parameters
    unknown = set(parameters) - {"otp_node", "tmp_path"}
    if unknown:
        raise _Failed(f"{block.where}: {function.__name__} asks for unknown fixtures {unknown}")
    if not inspect.iscoroutinefunction(function):
        function(**({"tmp_path": tmp_path} if "tmp_path" in parameters else {}))
        return

    async def go() -> None:
        kwargs: dict[str, Any] = {}
        if "tmp_path" in parameters:
            kwargs["tmp_path"] = tmp_path
        if "otp_node" in parameters:
            async with otp.Node() as node:
                kwargs["otp_node"] = node
                await function(**kwargs)
        else:
            await function(**kwargs)

    anyio.run(go, backend=backend)


@pytest.mark.parametrize(("page", "backend"), _params())
def test_docs_code_blocks_run(
    page: Path,
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    blocks = [b for b in _python_blocks(page) if not b.no_run]
    if any(b.needs_redis for b in blocks):
        redis_url = request.getfixturevalue("redis_url")  # skips with the reason if none
        _redirect_redis(monkeypatch, redis_url)
    real_run = otp.run

    def run_here(main: Callable[..., Any], *args: Any, **options: Any) -> Any:
        return real_run(main, *args, backend=backend, handle_signals=False)

    monkeypatch.setattr(otp, "run", run_here)
    # Titled blocks are files: importable from tmp_path by the blocks after them.
    files: dict[str, list[Block]] = {}
    for block in blocks:
        if block.title is not None:
            files.setdefault(block.title, []).append(block)
    for title, parts in files.items():
        (tmp_path / title).write_text("".join(part.code for part in parts))
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = {Path(title).stem for title in files}
    namespaces: dict[str | None, dict[str, Any]] = {}
    try:
        for block in blocks:
            namespace = namespaces.setdefault(
                block.title, {"__name__": "__main__", "__file__": str(tmp_path / "main.py")}
            )
            _run_block(block, namespace, backend, tmp_path)
    except _Failed as failure:
        pytest.fail(str(failure), pytrace=False)
    finally:
        for name in modules:
            sys.modules.pop(name, None)


def _run_block(block: Block, namespace: dict[str, Any], backend: str, tmp_path: Path) -> None:
    source = "\n" * (block.line - 1) + block.code  # tracebacks point into the page
    try:
        code = compile(
            source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
    except SyntaxError as exc:
        raise _Failed(f"{block.where}: the block does not compile: {exc}") from None
    before = set(namespace)
    try:
        if code.co_flags & _CO_COROUTINE:

            async def go() -> None:
                await eval(code, namespace)

            anyio.run(go, backend=backend)
        else:
            exec(code, namespace)
        for name in sorted(set(namespace) - before):
            value = namespace[name]
            if name.startswith("test_") and inspect.isfunction(value):
                _run_test_function(value, backend, tmp_path, block)
    except _Failed:
        raise
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != str(block.path):
            tb = tb.tb_next  # start the traceback at the page, not in this harness
        trace = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
        raise _Failed(f"{block.where}: the ```python block failed on {backend}:\n{trace}") from None


def _redirect_redis(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """Send the page's RedisBroker to the test Redis, under a prefix of this test alone."""
    import otp.redis

    unique = f"otpdocs-{uuid.uuid4().hex[:10]}"
    real = otp.redis.RedisBroker

    class DocsRedisBroker(real):  # type: ignore[misc, valid-type]
        def __init__(self, _url: str = url, *args: Any, prefix: str = "otp", **kw: Any) -> None:
            super().__init__(url, *args, prefix=f"{unique}-{prefix}", **kw)

    monkeypatch.setattr(otp.redis, "RedisBroker", DocsRedisBroker)


def test_the_readme_taste_runs_after_quickstart_command_1_alone(tmp_path: Path) -> None:
    """Quickstart command 1 installs anyotp without extras: no trio, no coredis, no msgpack."""
    import os
    import subprocess

    (taste,) = [
        b for b in _python_blocks(ROOT / "README.md") if "class Counter" in b.code and not b.no_run
    ]
    script = tmp_path / "taste.py"
    hide = "".join(
        f"sys.modules[{name!r}] = None\n" for name in ("trio", "coredis", "msgpack", "starlette")
    )
    script.write_text("import sys\n" + hide + taste.code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, f"{taste.where}: {result.stderr}"
    assert result.stdout.strip() == "7"


def test_a_failing_block_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# A page\n\n```python\nx = 1\nraise ValueError('in the docs')\n```\n")
    (block,) = extract(page)
    assert (block.line, block.code) == (4, "x = 1\nraise ValueError('in the docs')\n")
    with pytest.raises(_Failed) as info:
        _run_block(block, {"__name__": "__main__"}, "asyncio", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{page}:4: the ```python block failed on asyncio")
    assert f'File "{page}", line 5' in message  # the traceback points into the page
    assert "ValueError: in the docs" in message


def test_top_level_await_and_test_functions_run_on_the_backend(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nimport sniffio\nseen = []\n\n"
        "async def test_it(otp_node):\n"
        "    seen.append((sniffio.current_async_library(), otp_node.name))\n"
        "```\n\n"
        "```python\nawait anyio.sleep(0)\nseen.append('awaited')\n```\n"
    )
    namespace: dict[str, Any] = {"__name__": "__main__", "anyio": anyio}
    for block in extract(page):
        _run_block(block, namespace, "trio", tmp_path)
    assert namespace["seen"] == [("trio", "nonode"), "awaited"]


# ---------------------------------------------------------------------------- type checking


def write_for_mypy(directory: Path) -> dict[Path, Path]:
    """Write each page's runnable blocks as modules (one per page and ``title``) with every
    line at its line number in the page, so mypy's positions are the page's; returns
    module path -> page."""
    written: dict[Path, Path] = {}
    for page in PAGES:
        files: dict[str | None, list[Block]] = {}
        for block in _python_blocks(page):
            if not block.no_run:
                files.setdefault(block.title, []).append(block)
        length = len(page.read_text().splitlines())
        for title, blocks in files.items():
            lines = [""] * length
            for block in blocks:
                for offset, text in enumerate(block.code.splitlines()):
                    lines[block.line - 1 + offset] = text
            stem = str(page.relative_to(ROOT)).replace("/", "__").removesuffix(".md")
            # A titled block keeps its file name, so that `from shop import ...` resolves.
            module = directory / (title or f"{stem}.py")
            module.write_text("\n".join(lines) + "\n")
            written[module] = page
    return written


def _mypy_main() -> int:
    """``python -m tests.test_docs --mypy``: type-check the blocks (.ci/run runs it).

    Plain mypy, not --strict (snippets leave callbacks unannotated); redefinitions across a
    page's blocks (each shows its own ``main``) and top-level ``await`` are allowed.
    """
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="otp-docs-mypy-") as tmp:
        written = write_for_mypy(Path(tmp))
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "mypy",
                "--python-version=3.11",
                "--no-error-summary",
                "--explicit-package-bases",
                "--disable-error-code=no-redef",
                "--disable-error-code=top-level-await",
                "--check-untyped-defs",
                *map(str, written),
            ],
            capture_output=True,
            text=True,
            cwd=tmp,  # not the project's strict [tool.mypy] settings
            env={**os.environ, "MYPYPATH": str(ROOT)},
        )
        pages = {module.name: page.relative_to(ROOT) for module, page in written.items()}
        lines = []
        for line in result.stdout.splitlines(keepends=True):
            name, colon, rest = line.partition(":")
            lines.append(f"{pages[name]}:{rest}" if colon and name in pages else line)
        report = "".join(lines)
    print(report, end="")
    print(f"docs blocks under mypy: {len(written)} files, exit status {result.returncode}")
    return result.returncode


if __name__ == "__main__" and sys.argv[1:] == ["--mypy"]:
    sys.exit(_mypy_main())
