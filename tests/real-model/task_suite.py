#!/usr/bin/env python3
"""Runs a suite of realistic automation tasks against a real model through a LeForge server,
and scores each tool mode. Out of CI: it is slow (about 14 tokens/s on 2 cores).

Setup (see README.md beside this file):
  ../shared/local-llm/setup.sh                      # Qwen2.5-Coder-1.5B on 127.0.0.1:8083
  OPENAI_COMPATIBLE_BASE_URL=http://127.0.0.1:8083/v1 LEFORGE_ADMIN_KEY=... leforge serve
  tests/real-model/task_suite.py --modes auto,native

Each task is one run of an agent with a plain one-line system prompt and every built-in
ForgeHook, like a new user's first agent. A task is solved when the run's output is the
expected value: exactly, or as the only value of a one-field object (`{"slug": "..."}`),
or as its text form.
"""
import argparse
import base64
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request

CSV = "name,date,amount,region\nJohn,1/15/24,1500,West\nJane,2024-02-20,2000,East\nBob,March 5 2024,1200,West\nAmy,2024-04-01,800,North"

# (name, instruction, data, expected)
TASKS = [
    ("slug", "Make a URL slug from the title.",
     {"title": "Crème Brûlée: A Recipe!"}, "creme-brulee-a-recipe"),
    ("sha256", "Compute the SHA-256 hex digest of the text.",
     {"text": "hello world"}, hashlib.sha256(b"hello world").hexdigest()),
    ("md5", "Compute the MD5 hash of the text, as hex.",
     {"text": "LeForge"}, hashlib.md5(b"LeForge").hexdigest()),
    ("base64-encode", "Encode the text as base64.",
     {"text": "LeForge rocks"}, base64.b64encode(b"LeForge rocks").decode()),
    ("base64-decode", "Decode this base64 string to text.",
     {"encoded": base64.b64encode(b"Invoice 2024-117 paid").decode()}, "Invoice 2024-117 paid"),
    ("snake-case", "Convert the field name to snake_case.",
     {"name": "User ID Number"}, "user_id_number"),
    ("iso-date", "Convert the date to ISO format (YYYY-MM-DD).",
     {"date": "March 5 2024"}, "2024-03-05"),
    ("days-between", "How many days are there from start to end?",
     {"start": "2024-01-01", "end": "2024-03-01"}, 60),
    ("pick-email", "Return the customer's email address.",
     {"order": {"id": 7, "customer": {"name": "Ann", "email": "ann@example.com"}, "total": 42}},
     "ann@example.com"),
    ("csv-rows", "How many data rows (not counting the header) does this CSV have?",
     {"csv": CSV}, 4),
    ("totals-per-region", "Total the amount per region. Answer with a JSON object of region to total.",
     {"csv": CSV}, {"West": 2700, "East": 2000, "North": 800}),
    ("formula", "Compute price * quantity * (1 - discount).",
     {"price": 20, "quantity": 3, "discount": 0.25}, 45),
    ("emails", "Extract every email address from the text, as a JSON array.",
     {"text": "Write to ann@example.com or to bob@test.org for help."},
     ["ann@example.com", "bob@test.org"]),
]

# A second set, never tuned against: how far the score carries to tasks of the same kind
# worded differently (`--set extra`).
EXTRA_TASKS = [
    ("sha1", "Give me the SHA-1 hash (hex) of the message.",
     {"message": "abc"}, hashlib.sha1(b"abc").hexdigest()),
    ("hex-encode", "Hex-encode the value.",
     {"value": "Hi!"}, "486921"),
    ("upper", "Convert the name to upper case.",
     {"name": "ada lovelace"}, "ADA LOVELACE"),
    ("kebab", "Turn the label into kebab-case.",
     {"label": "Order Total Amount"}, "order-total-amount"),
    ("url-encode", "URL-encode the search query.",
     {"query": "red shoes & socks"}, "red%20shoes%20%26%20socks"),
    ("format-date", "Format the date as DD/MM/YYYY.",
     {"date": "2024-07-04"}, "04/07/2024"),
    ("add-days", "What date is 30 days after the start date? Answer as YYYY-MM-DD.",
     {"start": "2024-01-15"}, "2024-02-14"),
    ("city", "Return the city of the customer's address.",
     {"customer": {"name": "Bo", "address": {"street": "1 Main St", "city": "Lyon"}}}, "Lyon"),
    ("avg-per-region", "Average the amount per region, as a JSON object of region to average.",
     {"csv": CSV}, {"West": 1350, "East": 2000, "North": 800}),
    ("count-per-region", "Count the orders per region. Answer with a JSON object of region to count.",
     {"csv": CSV}, {"West": 2, "East": 1, "North": 1}),
    ("whitespace", "Collapse the extra whitespace in the text.",
     {"text": "  too   many    spaces  "}, "too many spaces"),
    ("yaml", "Parse the YAML into JSON.",
     {"yaml": "name: Ann\nage: 41\n"}, {"name": "Ann", "age": 41}),
    ("truncate", "Shorten the headline to at most 10 characters, no ellipsis.",
     {"headline": "Quarterly results are in"}, "Quarterly"),
]


def call(base, key, method, path, body=None, timeout=900):
    req = urllib.request.Request(base + path, method=method)
    req.add_header("x-api-key", key)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, data, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def solved(output, expected):
    if output == expected:
        return True
    if isinstance(output, dict) and len(output) == 1:
        (only,) = output.values()
        if only == expected:
            return True
        output = only
    if isinstance(output, str) and not isinstance(expected, str):
        try:
            return json.loads(output) == expected
        except ValueError:
            return False
    if isinstance(expected, str) and not isinstance(output, str):
        return json.dumps(output) == expected
    if isinstance(output, (int, float)) and isinstance(expected, (int, float)):
        return abs(output - expected) < 1e-9
    return False


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("LEFORGE_URL", "http://127.0.0.1:4000"))
    ap.add_argument("--key", default=os.environ.get("LEFORGE_ADMIN_KEY"))
    ap.add_argument("--modes", default="auto,native", help="tool modes to score, comma-separated")
    ap.add_argument("--provider", default="openai-compatible")
    ap.add_argument("--model", default="local")
    ap.add_argument("--only", help="run only the tasks whose name contains this")
    ap.add_argument("--set", default="main", choices=["main", "extra"],
                    help="main: the suite the runtime was tuned on; extra: a second set never tuned against")
    ap.add_argument("--json", help="write the per-task results to this file")
    args = ap.parse_args()
    if not args.key:
        sys.exit("set LEFORGE_ADMIN_KEY or pass --key")
    api = args.url.rstrip("/") + "/api/v1"
    status, hooks = call(api, args.key, "GET", "/forgehooks")
    tools = sorted(h["id"] for h in hooks["data"])
    chosen = TASKS if args.set == "main" else EXTRA_TASKS
    tasks = [t for t in chosen if not args.only or args.only in t[0]]
    results = {}
    for mode in args.modes.split(","):
        name = f"suite {mode} {int(time.time())}"
        status, agent = call(api, args.key, "POST", "/agents", {
            "name": name,
            "system_prompt": "You are a data automation assistant.",
            "provider": args.provider, "model": args.model, "tools": tools,
            "config": {"tool_mode": mode, "temperature": 0, "max_steps": 6,
                       "timeout_ms": 600000, "max_tokens": 512},
        })
        if status != 201:
            sys.exit(f"could not create the agent: {status} {agent}")
        slug = agent["data"]["slug"]
        score, rows = 0, []
        for tname, instruction, data, expected in tasks:
            t0 = time.time()
            status, r = call(api, args.key, "POST", f"/agents/{slug}/run", {"input": instruction, "data": data})
            secs = time.time() - t0
            run = r.get("data") if r.get("success") else (r.get("error", {}).get("details") or {}).get("run") or {}
            output = run.get("output")
            steps = [f'{s["tool"]}__{s["action"]}' + ("!" if s.get("error") else "") for s in run.get("steps", [])]
            ok = run.get("status") == "completed" and solved(output, expected)
            score += ok
            rows.append({"task": tname, "ok": ok, "secs": round(secs, 1), "status": run.get("status"),
                         "steps": steps, "output": output, "expected": expected,
                         "tool_mode": (run.get("limits") or {}).get("tool_mode"),
                         "error": run.get("error_message")})
            print(f"[{mode}] {'PASS' if ok else 'FAIL'} {tname:18} {secs:6.1f}s steps={steps} output={json.dumps(output)[:120]}", flush=True)
        total = sum(r["secs"] for r in rows)
        print(f"[{mode}] solved {score}/{len(tasks)} in {total:.0f}s ({total / max(len(tasks), 1):.0f}s per task)", flush=True)
        results[mode] = {"score": score, "of": len(tasks), "seconds": round(total), "tasks": rows}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
