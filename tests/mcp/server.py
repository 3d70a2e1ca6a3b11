"""Reference MCP server for the Rust integration tests.

A real server built with the Python MCP SDK's `MCPServer`, served over Streamable
HTTP at `/mcp`, so the Rust MCP client can be checked against an independent
implementation. It offers five tools:

* `add(a, b)`      -> structured `{"sum": a + b}` (tools/list shows an outputSchema)
* `fail(reason)`   -> raises, so the result has isError true and the text carries `reason`
* `echo(text)`     -> `text` as plain text content, no structured output
* `slow(seconds)`  -> sleeps, reporting progress when asked, then `{"slept": seconds}`
* `whoami(header, env)` -> JSON text: the value of one request header (null on stdio) and
  of each named environment variable (null when unset), so a test can see what reached it

Usage: python3 tests/mcp/server.py --port P [--host 127.0.0.1]
       python3 tests/mcp/server.py --stdio   (MCP on stdin/stdout, for stdio registrations)

Once the port accepts connections (and answers as this very process), the script
prints exactly one line, `READY <port>`, to stdout and flushes it. Logs go to stderr.
"""

import argparse
import json
import os
import secrets
import sys

import anyio
import httpx2
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings

# A path only this process knows the answer to, so the readiness probe cannot be
# fooled by some other program that already holds the port.
READY_PATH = "/__ready"
READY_TOKEN = secrets.token_hex(16)

EXIT_CODE = 0


class SumResult(BaseModel):
    """The result of `add`."""

    sum: int = Field(description="a + b")


class SleptResult(BaseModel):
    """The result of `slow`."""

    slept: float = Field(description="How many seconds the tool slept")


def build_server() -> MCPServer:
    server = MCPServer(
        "leforge-test-server",
        version="1.0.0",
        instructions="Test server for the leforge MCP client.",
        log_level="WARNING",
    )

    @server.tool(description="Add two integers and return their sum as structured output.")
    def add(a: int, b: int) -> SumResult:
        return SumResult(sum=a + b)

    @server.tool(
        description="Always fail: raises an error whose message is `reason`.",
        structured_output=False,
    )
    def fail(reason: str) -> str:
        # The SDK hides the text of an arbitrary exception from the client (it sends only
        # "Error executing tool fail"); ToolError is the exception whose message it passes on.
        raise ToolError(reason)

    @server.tool(
        description="Return `text` unchanged as plain text content.",
        structured_output=False,
    )
    def echo(text: str) -> str:
        return text

    @server.tool(description="Sleep for `seconds` seconds (reporting progress if asked), then return how long.")
    async def slow(seconds: float, ctx: Context) -> SleptResult:
        await ctx.report_progress(0, 1, "started")
        await anyio.sleep(max(seconds, 0.0))
        await ctx.report_progress(1, 1, "done")
        return SleptResult(slept=seconds)

    @server.tool(
        description="Report one request header and the named environment variables as JSON.",
        structured_output=False,
    )
    def whoami(header: str, env: list[str], ctx: Context) -> str:
        headers = ctx.headers
        return json.dumps(
            {
                "header": headers.get(header) if headers is not None else None,
                "env": {name: os.environ.get(name) for name in env},
            }
        )

    @server.custom_route(READY_PATH, methods=["GET"])
    async def ready(_request: Request) -> Response:
        return PlainTextResponse(READY_TOKEN)

    return server


def security_settings(host: str) -> TransportSecuritySettings:
    """DNS-rebinding protection that admits the loopback names with any port."""
    bases = ["127.0.0.1", "localhost", "[::1]"]
    if host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", "::"):
        bases.append(f"[{host}]" if ":" in host else host)
    hosts = bases + [f"{b}:*" for b in bases]
    origins = [f"http://{b}" for b in bases] + [f"http://{b}:*" for b in bases]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )


async def announce_when_ready(host: str, port: int) -> None:
    """Poll this process's own readiness route, then print `READY <port>` once."""
    probe_host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    netloc = f"[{probe_host}]" if ":" in probe_host else probe_host
    url = f"http://{netloc}:{port}{READY_PATH}"
    async with httpx2.AsyncClient(trust_env=False, timeout=2.0) as client:
        while True:
            try:
                response = await client.get(url, headers={"host": f"127.0.0.1:{port}"})
                if response.status_code == 200 and response.text == READY_TOKEN:
                    break
            except httpx2.HTTPError:
                pass
            await anyio.sleep(0.05)
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--stdio", action="store_true", help="speak MCP on stdin/stdout instead of HTTP"
    )
    args = parser.parse_args()

    server = build_server()
    if args.stdio:
        await server.run_stdio_async()
        return
    if args.port is None:
        parser.error("--port is required unless --stdio is given")
    async with anyio.create_task_group() as tg:

        async def serve() -> None:
            global EXIT_CODE
            try:
                await server.run_streamable_http_async(
                    host=args.host,
                    port=args.port,
                    streamable_http_path="/mcp",
                    transport_security=security_settings(args.host),
                )
            except SystemExit as exc:
                # uvicorn calls sys.exit() when it cannot bind; exit with its code, quietly.
                EXIT_CODE = exc.code if isinstance(exc.code, int) else 1
            finally:
                tg.cancel_scope.cancel()

        tg.start_soon(serve)
        tg.start_soon(announce_when_ready, args.host, args.port)


if __name__ == "__main__":
    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
    sys.exit(EXIT_CODE)
