"""A ForgeHook written in Python, built with componentize-py against host-api/wit.

componentize-py -d host-api/wit -w forgehook componentize app -p tests/guests/python \
    -o python-guest.wasm --stub-wasi
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host

MANIFEST = {
    "id": "py-text",
    "name": "Python text tools",
    "version": "0.1.0",
    "description": "Counts words; written in Python.",
    "runtime": "wasm",
    "category": "testing",
    "tags": ["test", "python"],
    "author": "LeForge",
    "endpoints": [
        {
            "name": "word_count",
            "description": "Counts the words and characters of `text`.",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
                "additionalProperties": False,
            },
            "output_schema": {
                "type": "object",
                "properties": {
                    "words": {"type": "integer"},
                    "chars": {"type": "integer"},
                    "clock_ok": {"type": "boolean"},
                },
                "required": ["words", "chars", "clock_ok"],
            },
        },
        {
            "name": "fail",
            "description": "Always fails with the code NOPE.",
            "input_schema": {"type": "object"},
            "output_schema": {"type": "object"},
        },
    ],
    "capabilities": {"allowed_hosts": [], "config": [], "limits": {"memory_mb": 128}},
}


def fail(code, message):
    return Err(wit_world.ForgehookError(code=code, message=message))


class WitWorld(wit_world.WitWorld):
    def describe(self) -> str:
        return json.dumps(MANIFEST)

    def invoke(self, endpoint: str, input: str) -> str:
        try:
            data = json.loads(input)
        except ValueError as e:
            raise fail("INVALID_INPUT", f"input is not JSON: {e}")
        if endpoint == "word_count":
            text = data.get("text")
            if not isinstance(text, str):
                raise fail("INVALID_INPUT", "`text` must be a string")
            host.log(host.LogLevel.INFO, f"counting {len(text)} characters")
            return json.dumps(
                {
                    "words": len(text.split()),
                    "chars": len(text),
                    "clock_ok": host.now_ms() > 1_600_000_000_000,
                }
            )
        if endpoint == "fail":
            raise fail("NOPE", "this endpoint always fails")
        raise fail("UNKNOWN_ENDPOINT", f"no endpoint named {endpoint!r}")
