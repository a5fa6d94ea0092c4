#!/usr/bin/env python3
"""Every dsv4 command refuses what it does not take: an unknown or misspelt option (named, with
the valid ones listed), an option without its value, a repeated option, a stray argument; each
exits 2 with a message and never runs. `dsv4 COMMAND --help` lists every option with what it does.

usage: test_cli_options.py DSV4_BINARY GOLDEN_DIR
"""
import subprocess
import sys

binary, golden = sys.argv[1], sys.argv[2]
COMMANDS = ["info", "plan", "eval", "generate", "demo", "bench", "tokenize", "chat-render",
            "chat-parse", "run", "chat", "serve"]


def dsv4(*args):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def refused(args, *words):
    r = dsv4(*args)
    assert r.returncode == 2, (args, r.returncode, r.stdout, r.stderr)
    for w in words:
        assert w in r.stderr, (args, w, r.stderr)
    assert r.stdout == "", (args, r.stdout)  # nothing ran


for command in COMMANDS:
    refused([command, "--bogus-option"], "unknown option --bogus-option", "valid: --")
    # The help and the parser read one table: every option listed, each with what it does.
    r = dsv4(command, "--help")
    assert r.returncode == 0 and "options:" in r.stdout, (command, r.stdout, r.stderr)
    listed = [line for line in r.stdout.splitlines() if line.startswith("  --")]
    assert listed and all(len(line.split("  ")) >= 2 for line in listed), r.stdout

# The examples of issue 11: a misspelt option is refused instead of ignored.
model = f"{golden}/tiny-a"
refused(["eval", "--model", model, "--numerix", "official"], "--numerix")
refused(["info", "--model", model, "stray"], 'unexpected argument "stray"')
refused(["bench", "--preset", "demo", "--steps"], "--steps needs a value")
refused(["plan", "--preset", "v4-flash", "--context", "8", "--context", "9"], "given twice")
refused(["run", "--preset", "demo", "one prompt", "another"], 'unexpected argument "another"')
refused(["frobnicate"], "unknown command")
# What is valid still runs.
r = dsv4("info", "--model", model)
assert r.returncode == 0 and r.stdout, r.stderr
r = dsv4("plan", "--preset", "v4-flash", "--context", "4096")
assert r.returncode == 0 and r.stdout, r.stderr
print(f"cli options: {len(COMMANDS)} commands refuse unknown options, stray arguments, missing "
      "values and repeats; --help lists every option")
