"""Reference MCP client for the Rust integration tests.

A command-line client built with the Python MCP SDK's `Client` over Streamable
HTTP, so the Rust MCP server can be checked against an independent
implementation. It makes one connection, runs one command, and prints exactly one
JSON document on stdout (logs, if any, go to stderr). Nothing is retried.

Usage:
  python3 tests/mcp/client.py --url URL [--key KEY] [--progress] [--mode MODE] list
  python3 tests/mcp/client.py --url URL [--key KEY] [--progress] [--mode MODE] call NAME 'JSON_ARGS'

  --key KEY   send `Authorization: Bearer KEY` on every HTTP request
  --progress  make the call with a progress callback (so a progressToken is sent)
  --mode      `legacy` (default: the initialize handshake), `auto` (the SDK's
              default: probe `server/discover` first, fall back to initialize),
              or a modern protocol version such as `2026-07-28` (adopted directly)

Output (exit 0 unless noted):
  list  {"protocol_version", "server_name", "tools": [{"name", "description",
         "inputSchema", "outputSchema"}], "pages"}   (every nextCursor followed)
  call  {"isError", "structuredContent", "text": [...], "meta", "progress":
         [{"progress", "message"}]}
  a JSON-RPC error answer         {"error": {"code", "message"}}
  connection failure / HTTP >= 400 {"http_error": "..."}            exit 3
  the SDK rejected the answer     {"client_error": "..."}           exit 4
"""

import argparse
import json
import sys
from typing import Any

import anyio
import httpx2

from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, Implementation

MAX_PAGES = 1000


class HttpLog:
    """Remembers the HTTP outcome of every JSON-RPC POST, in order.

    The SDK turns an HTTP error status into a JSON-RPC error of its own making,
    losing the status code, so the client watches the wire itself to tell a
    server's JSON-RPC error from an HTTP-level failure.
    """

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []

    @staticmethod
    def _describe(request: httpx2.Request) -> dict[str, Any]:
        try:
            body = json.loads(request.content or b"null")
        except (ValueError, httpx2.RequestNotRead):
            body = None
        if isinstance(body, dict):
            return {"method": body.get("method"), "is_request": "id" in body and "method" in body}
        return {"method": None, "is_request": False}

    async def on_request(self, request: httpx2.Request) -> None:
        if request.method == "POST":
            entry = self._describe(request)
            entry.update(request=request, status=None, reason=None)
            self.posts.append(entry)

    async def on_response(self, response: httpx2.Response) -> None:
        if response.request.method != "POST":
            return
        for entry in reversed(self.posts):
            if entry["request"] is response.request:
                entry["status"] = response.status_code
                entry["reason"] = response.reason_phrase
                if response.status_code >= 400:
                    # Read (and so cache) the error body; the SDK reads it again from the cache.
                    try:
                        entry["body"] = (await response.aread()).decode("utf-8", "replace").strip()[:500]
                    except httpx2.HTTPError:
                        entry["body"] = ""
                return

    def last_request(self) -> dict[str, Any] | None:
        """The most recent POST that carried a JSON-RPC request (this client sends one at a time)."""
        for entry in reversed(self.posts):
            if entry["is_request"]:
                return entry
        return None

    def http_failure(self) -> str | None:
        """Describe the last request's HTTP failure, or None if it got a 2xx answer."""
        entry = self.last_request()
        if entry is None:
            return None
        method = entry["method"]
        if entry["status"] is None:
            return f"no HTTP response to POST {method}"
        if entry["status"] >= 400:
            reason = f" {entry['reason']}" if entry["reason"] else ""
            body = f": {entry['body']}" if entry.get("body") else ""
            return f"HTTP {entry['status']}{reason} (POST {method}){body}"
        return None


def emit(document: dict[str, Any], code: int = 0) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()
    raise SystemExit(code)


def leaves(exc: BaseException) -> list[BaseException]:
    """Flatten (possibly nested) exception groups into their leaf exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for inner in exc.exceptions:
            out.extend(leaves(inner))
        return out
    return [exc]


def dump(value: Any) -> Any:
    """Wire (camelCase, JSON-mode) form of an SDK model or plain value."""
    if hasattr(value, "model_dump"):
        return value.model_dump(by_alias=True, mode="json", exclude_none=True)
    return value


async def run_list(client: Client) -> dict[str, Any]:
    tools: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
        pages += 1
        for tool in page.tools:
            tools.append(
                {
                    "name": tool.name,
                    "description": tool.description,
                    "inputSchema": dump(tool.input_schema),
                    "outputSchema": dump(tool.output_schema),
                }
            )
        cursor = page.next_cursor
        if cursor is None:
            break
        if pages >= MAX_PAGES:
            raise RuntimeError(f"tools/list pagination did not end after {MAX_PAGES} pages")
    info = client.server_info
    return {
        "protocol_version": client.protocol_version,
        "server_name": info.name if info is not None else None,
        "tools": tools,
        "pages": pages,
    }


async def run_call(client: Client, name: str, arguments: dict[str, Any], progress: bool) -> dict[str, Any]:
    updates: list[dict[str, Any]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        updates.append({"progress": value, "message": message})

    result = await client.call_tool(name, arguments, progress_callback=on_progress if progress else None)
    return {
        "isError": bool(result.is_error),
        "structuredContent": dump(result.structured_content),
        "text": [block.text for block in result.content if getattr(block, "type", None) == "text"],
        "meta": dump(result.meta),
        "progress": updates,
    }


async def main(args: argparse.Namespace, arguments: dict[str, Any] | None) -> None:
    log = HttpLog()
    headers = {"Authorization": f"Bearer {args.key}"} if args.key is not None else None
    http = httpx2.AsyncClient(
        headers=headers,
        timeout=httpx2.Timeout(30.0, read=300.0),
        trust_env=False,
        event_hooks={"request": [log.on_request], "response": [log.on_response]},
    )
    outcome: dict[str, Any] | None = None
    try:
        async with http:
            client = Client(
                streamable_http_client(args.url, http_client=http),
                mode=args.mode,
                cache=None,
                client_info=Implementation(name="leforge-test-client", version="1.0.0"),
            )
            async with client:
                if args.command == "list":
                    outcome = await run_list(client)
                else:
                    assert arguments is not None
                    outcome = await run_call(client, args.name, arguments, args.progress)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes one JSON document
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            raise
        # Closing the connection after the answer (the session DELETE, the transport's
        # task group) must not turn a good answer into a failure.
        if outcome is not None:
            emit(outcome)
        report_failure(exc, log)
    if outcome is None:  # pragma: no cover - the context manager swallowed an exception
        emit({"client_error": "no result"}, 4)
    emit(outcome)


def report_failure(exc: BaseException, log: HttpLog) -> None:
    found = leaves(exc)
    mcp_errors = [e for e in found if isinstance(e, MCPError)]
    transport = [e for e in found if isinstance(e, httpx2.HTTPError | OSError)]
    http_failure = log.http_failure()
    if transport:
        detail = f"{type(transport[0]).__name__}: {transport[0]}"
        prefix = f"{http_failure}: " if http_failure else ""
        emit({"http_error": prefix + detail}, 3)
    if mcp_errors:
        err = mcp_errors[0]
        if http_failure is not None:
            emit({"http_error": http_failure}, 3)
        if err.code == CONNECTION_CLOSED:
            emit({"http_error": f"connection closed: {err.message}"}, 3)
        emit({"error": {"code": err.code, "message": err.message}})
    if http_failure is not None:
        emit({"http_error": http_failure}, 3)
    first = found[0]
    emit({"client_error": f"{type(first).__name__}: {first}"}, 4)


def parse_args() -> tuple[argparse.Namespace, dict[str, Any] | None]:
    parser = argparse.ArgumentParser(description="MCP Streamable HTTP test client (one JSON document on stdout).")
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:8080/mcp")
    parser.add_argument("--key", help="sent as `Authorization: Bearer KEY`")
    parser.add_argument("--progress", action="store_true", help="ask for progress notifications on `call`")
    parser.add_argument("--mode", default="legacy", help="legacy (default), auto, or a modern protocol version")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list every tool, following nextCursor")
    call = commands.add_parser("call", help="call one tool")
    call.add_argument("name")
    call.add_argument("json_args", nargs="?", default="{}", help="the arguments, a JSON object")
    args = parser.parse_args()
    arguments = None
    if args.command == "call":
        try:
            arguments = json.loads(args.json_args)
        except ValueError as exc:
            parser.error(f"JSON_ARGS is not JSON: {exc}")
        if not isinstance(arguments, dict):
            parser.error("JSON_ARGS must be a JSON object")
    return args, arguments


if __name__ == "__main__":
    parsed, parsed_arguments = parse_args()
    anyio.run(main, parsed, parsed_arguments)
