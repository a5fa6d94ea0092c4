#!/usr/bin/env python3
"""dsv4 serve over HTTP with the standard library: health, models, the API key, chat and text
completions plain and streamed (deterministic under a seed, usage counts, finish reasons),
OpenAI-style errors for malformed input, wrong types and out-of-range limits, cancellation on
disconnect, deadlines, the context limit, the queue limit, the prefix cache (in RAM and across a
restart), tool calls and reasoning, and batched concurrent streams that match their solo runs.

usage: test_cli_serve.py DSV4_BINARY
"""
import concurrent.futures
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

KEY = "test-key-123"


def start(binary, *extra, forced_reply=None):
    env = dict(os.environ)
    if forced_reply is not None:
        env["DSV4_SERVE_FORCED_REPLY"] = forced_reply  # the server's test hook
    proc = subprocess.Popen([binary, "serve", "--demo", "--port", "0", "--api-key", KEY, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "http://127.0.0.1:" not in line:
        proc.kill()
        sys.exit(f"serve did not start: {line!r} {proc.stderr.read()}")
    return proc, line.strip().rsplit("http://", 1)[1]


def call(base, path, body=None, key=KEY, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(f"http://{base}{path}", data=data)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def metrics_of(base):
    request = urllib.request.Request(f"http://{base}/metrics")
    request.add_header("Authorization", f"Bearer {KEY}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(line.split(" ", 1) for line in response.read().decode().splitlines()
                    if line and not line.startswith("#"))


def stream(base, body, path="/v1/chat/completions"):
    """The streamed chunks of a request (the [DONE] sentinel checked and dropped)."""
    request = urllib.request.Request(f"http://{base}{path}",
                                     data=json.dumps(dict(body, stream=True)).encode())
    request.add_header("Authorization", f"Bearer {KEY}")
    with urllib.request.urlopen(request, timeout=120) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = [line[len("data: "):] for line in response.read().decode().split("\n")
                  if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]


CONVERSATION = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Name a colour."}]


def first_turn(base):
    code, answer = call(base, "/v1/chat/completions",
                        {"messages": CONVERSATION, "max_tokens": 4, "seed": 5})
    assert code == 200, answer
    return answer


def second_turn(base, first):
    messages = CONVERSATION + [first["choices"][0]["message"],
                               {"role": "user", "content": "Another one."}]
    code, answer = call(base, "/v1/chat/completions",
                        {"messages": messages, "max_tokens": 4, "seed": 6})
    assert code == 200, answer
    return answer


def check_conversation_reuse(base):
    """A request that extends an earlier conversation prefills only what is new."""
    first = first_turn(base)
    second = second_turn(base, first)
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"], (cached, first["usage"])
    assert cached < second["usage"]["prompt_tokens"]
    return first


def expect_error(base, body, status, words, raw=None):
    code, answer = call(base, "/v1/chat/completions", body, raw=raw)
    assert code == status, (code, answer)
    assert words in answer["error"]["message"], answer
    assert answer["error"]["type"] in ("invalid_request_error", "server_error"), answer


def main():
    proc, base = start(sys.argv[1])
    try:
        assert call(base, "/health", key=None) == (200, {"status": "ok"})
        code, models = call(base, "/v1/models")
        assert code == 200 and models["data"][0]["id"] == "dsv4-demo", models
        # The API key: missing or wrong is 401, on every endpoint but /health.
        assert call(base, "/v1/models", key=None)[0] == 401
        assert call(base, "/v1/models", key="test-key-124")[0] == 401
        assert call(base, "/v1/chat/completions", {"messages": []}, key="x")[0] == 401

        request = {"messages": [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hello"}],
                   "max_tokens": 6, "seed": 7, "temperature": 0.8, "top_p": 0.9}
        code, first = call(base, "/v1/chat/completions", request)
        assert code == 200, first
        code, again = call(base, "/v1/chat/completions", request)
        choice = first["choices"][0]
        assert choice["message"]["role"] == "assistant"
        assert choice["finish_reason"] in ("length", "stop"), choice
        assert again["choices"][0]["message"] == choice["message"], (again, first)
        usage = first["usage"]
        assert usage["completion_tokens"] <= 6 and usage["prompt_tokens"] > 0, usage
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert first["object"] == "chat.completion" and first["model"] == "dsv4-demo"
        # Another seed, another text (the demo's weights are random, its text is noise).
        other = dict(request, seed=8, max_tokens=12)
        assert call(base, "/v1/chat/completions", other)[1]["choices"][0]["message"] != \
            choice["message"]
        # Tools go through the V4 encoding (attached to the system message): accepted.
        tools = [{"type": "function", "function": {"name": "get_time", "description": "now",
                                                   "parameters": {"type": "object"}}}]
        assert call(base, "/v1/chat/completions", dict(request, tools=tools))[0] == 200

        # Streaming: the deltas add up to the plain answer; the last chunk has the finish reason
        # and the usage.
        chunks = stream(base, request)
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == choice["message"]["content"], (text, choice)
        assert chunks[-1]["choices"][0]["finish_reason"] == choice["finish_reason"]
        streamed_usage = chunks[-1]["usage"]
        assert streamed_usage["prompt_tokens"] == usage["prompt_tokens"]
        assert streamed_usage["completion_tokens"] == usage["completion_tokens"]
        # Thinking: the demo's random text never closes </think>, so it is reasoning while it
        # streams and the whole turn comes back as plain content; nothing is sent twice.
        thinking = dict(request, thinking=True)
        code, plain = call(base, "/v1/chat/completions", thinking)
        chunks = stream(base, thinking)
        sent = "".join(c["choices"][0]["delta"].get("reasoning_content", "") +
                       c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert sent == plain["choices"][0]["message"]["content"], (sent, plain)

        # A client that goes away mid-stream stops the generation within a step or two (the
        # next write of a piece fails): the server has nothing running long before the
        # abandoned request's 3000 tokens could have been generated.
        start_time = time.monotonic()
        call(base, "/v1/chat/completions", dict(request, max_tokens=40))
        per_token = (time.monotonic() - start_time) / 40
        cancelled_before = float(metrics_of(base)["dsv4_requests_cancelled_total"])
        host, port = base.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        connection.request("POST", "/v1/chat/completions",
                           json.dumps(dict(request, stream=True, max_tokens=3000)),
                           {"Authorization": f"Bearer {KEY}"})
        response = connection.getresponse()
        assert response.status == 200
        response.read(200)  # the first chunks arrived: generation is under way
        connection.close()
        start_time = time.monotonic()
        while True:  # the request was queued or running; it ends as cancelled
            m = metrics_of(base)
            if (float(m["dsv4_requests_cancelled_total"]) == cancelled_before + 1 and
                    float(m["dsv4_running"]) == 0 and float(m["dsv4_queue_length"]) == 0):
                break
            assert time.monotonic() - start_time < 300 * per_token + 5, ("still generating", m)
            time.sleep(0.01)
        waited = time.monotonic() - start_time
        assert waited < 300 * per_token + 5, (waited, per_token)

        # The prefix cache: the same prompt again comes from the cache (all but its last token),
        # with the same answer as the first run (the engine's bits do not depend on chunking).
        assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == \
            usage["prompt_tokens"] - 1, again["usage"]
        check_conversation_reuse(base)

        # /v1/completions: the raw prompt, no chat format; deterministic under a seed.
        completion = {"prompt": "Once upon a time", "max_tokens": 5, "seed": 1, "temperature": 0.5}
        code, done = call(base, "/v1/completions", completion)
        assert code == 200 and done["object"] == "text_completion", done
        assert done["choices"][0]["text"] == call(base, "/v1/completions", completion)[1][
            "choices"][0]["text"]
        assert done["usage"]["completion_tokens"] <= 5
        code, bad = call(base, "/v1/completions", {"prompt": 3})
        assert code == 400 and "'prompt'" in bad["error"]["message"], bad
        # Streamed, the same text arrives piece by piece.
        chunks = stream(base, completion, path="/v1/completions")
        assert "".join(c["choices"][0]["text"] for c in chunks) == done["choices"][0]["text"]
        assert chunks[-1]["choices"][0]["finish_reason"] == done["choices"][0]["finish_reason"]
        assert chunks[-1]["usage"]["completion_tokens"] == done["usage"]["completion_tokens"]

        # /metrics: Prometheus text with the counters the requests above moved.
        metrics = metrics_of(base)
        assert float(metrics["dsv4_requests_total"]) >= 10, metrics
        assert float(metrics["dsv4_completion_tokens_total"]) > 0, metrics
        assert float(metrics["dsv4_decode_tokens_per_second"]) > 0, metrics
        assert float(metrics["dsv4_queue_length"]) == 0, metrics
        assert 0 < float(metrics["dsv4_prefix_cache_hit_rate"]) < 1, metrics
        # Cache bytes by kind and tier: the prefix cache holds window entries in RAM, none on
        # disk (no --ram-budget).
        assert float(metrics['dsv4_cache_bytes{kind="window",tier="ram"}']) > 0, metrics
        assert float(metrics['dsv4_cache_bytes{kind="compressed",tier="disk"}']) == 0, metrics
        assert call(base, "/metrics", key=None)[0] == 401

        expect_error(base, None, 400, "not valid JSON", raw=b'{"messages": [')
        expect_error(base, [1, 2], 400, "JSON object")
        expect_error(base, {"messages": []}, 400, "'messages'")
        expect_error(base, dict(request, temperature="hot"), 400, "'temperature'")
        expect_error(base, dict(request, max_tokens=0), 400, "'max_tokens'")
        expect_error(base, dict(request, max_tokens=10**6), 400, "'max_tokens'")
        expect_error(base, dict(request, stop=[1]), 400, "'stop'")
        expect_error(base, dict(request, tools={"a": 1}), 400, "'tools'")
        expect_error(base, dict(request, messages=[{"role": "wizard", "content": "x"}]), 400,
                     "role")
        expect_error(base, dict(request, stream="yes"), 400, "'stream'")
        code, missing = call(base, "/v1/nothing")
        assert code == 404 and "no such endpoint" in missing["error"]["message"], missing
        print("serve: health, models, key, completions and errors as expected")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    check_queue_limit(sys.argv[1])
    check_limits(sys.argv[1])
    check_cache_dir(sys.argv[1])
    check_tool_calls(sys.argv[1])
    check_reasoning(sys.argv[1])
    check_concurrency(sys.argv[1])


def check_concurrency(binary):
    """8 simultaneous streams each match the same request run alone; then a bounded load test
    (200 requests, 8 at a time) ends with zero errors and reports its latencies."""
    proc, base = start(binary)
    try:
        def request_for(i):
            return {"messages": [{"role": "user", "content": f"Question {i}"}],
                    "max_tokens": 6, "seed": i, "temperature": 0.9}
        alone = {}
        for i in range(8):
            chunks = stream(base, request_for(i))
            alone[i] = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        before = metrics_of(base)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda i: "".join(
                c["choices"][0]["delta"].get("content", "") for c in stream(base, request_for(i))),
                range(8)))
        assert together == [alone[i] for i in range(8)], (together, alone)
        # They ran batched: decode steps advanced several sequences at once.
        after = metrics_of(base)
        rows, steps = (float(after[name]) - float(before[name])
                       for name in ("dsv4_decode_batch_rows_total", "dsv4_decode_steps_total"))
        assert rows / steps > 2, (rows, steps)

        def timed(i):
            t0 = time.monotonic()
            code, answer = call(base, "/v1/chat/completions",
                                dict(request_for(i % 50), max_tokens=2))
            return code, time.monotonic() - t0, answer.get("usage", {}).get("completion_tokens", 0)
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(timed, range(200)))
        elapsed = time.monotonic() - t0
        errors = [r for r in results if r[0] != 200]
        assert not errors, errors[:3]
        latencies = sorted(r[1] for r in results)
        tokens = sum(r[2] for r in results)
        print(f"serve: 8 concurrent streams match their solo runs (batched: {rows / steps:.2f} "
              f"sequences per decode step); load test 200 requests "
              f"(8 at a time): 0 errors, p50 {latencies[100] * 1e3:.0f} ms, "
              f"p99 {latencies[197] * 1e3:.0f} ms, {tokens / elapsed:.1f} generated tokens/s")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


TOOL_CALL_REPLY = ("Checking.\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"get_time\">\n"
                   "<｜DSML｜parameter name=\"zone\" string=\"true\">UTC</｜DSML｜parameter>\n"
                   "</｜DSML｜invoke>\n</｜DSML｜tool_calls>")


def check_tool_calls(binary):
    """A DSML tool call in the model's output comes back as OpenAI tool_calls, plain and
    streamed, and the tool's result can be sent back in the next request."""
    # Served from packed sessions (--kv-format): the format changes nothing in the reply.
    proc, base = start(binary, "--kv-format", "packed", forced_reply=TOOL_CALL_REPLY)
    try:
        tools = [{"type": "function", "function": {
            "name": "get_time", "description": "The time in a zone.",
            "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}}}}]
        request = {"messages": [{"role": "user", "content": "What time is it?"}], "tools": tools,
                   "max_tokens": 200}
        code, answer = call(base, "/v1/chat/completions", request)
        assert code == 200, answer
        choice = answer["choices"][0]
        assert choice["finish_reason"] == "tool_calls", choice
        call_ = choice["message"]["tool_calls"][0]
        assert call_["function"]["name"] == "get_time", call_
        assert json.loads(call_["function"]["arguments"]) == {"zone": "UTC"}, call_
        assert choice["message"]["content"] == "Checking.", choice
        chunks = stream(base, request)
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        assert text == "Checking.", text
        streamed_calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks
                          if "tool_calls" in c["choices"][0]["delta"]]
        assert len(streamed_calls) == 1 and streamed_calls[0][0]["index"] == 0, streamed_calls
        assert streamed_calls[0][0]["function"]["name"] == "get_time"
        assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
        # The round trip: the call and its result go back in; the encoder takes them.
        follow_up = dict(request, messages=request["messages"] + [
            choice["message"],
            {"role": "tool", "tool_call_id": call_.get("id", "call_0"), "content": "12:00"}])
        assert call(base, "/v1/chat/completions", follow_up)[0] == 200
        print("serve: DSML tool calls come back as tool_calls, plain and streamed")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def check_reasoning(binary):
    """In thinking mode the text before </think> comes back as reasoning_content."""
    proc, base = start(binary, forced_reply="Two plus two is four.</think>4")
    try:
        request = {"messages": [{"role": "user", "content": "2+2?"}], "thinking": True,
                   "max_tokens": 100}
        code, answer = call(base, "/v1/chat/completions", request)
        assert code == 200, answer
        message = answer["choices"][0]["message"]
        assert message["reasoning_content"] == "Two plus two is four.", message
        assert message["content"] == "4", message
        chunks = stream(base, request)
        deltas = [c["choices"][0]["delta"] for c in chunks]
        assert "".join(d.get("reasoning_content", "") for d in deltas) == "Two plus two is four."
        assert "".join(d.get("content", "") for d in deltas) == "4"
        print("serve: thinking comes back as reasoning_content, plain and streamed")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def check_cache_dir(binary):
    """With --cache-dir, a restarted server still resumes the conversation from its cache."""
    cache_dir = tempfile.mkdtemp(prefix="dsv4-serve-cache-")
    try:
        proc, base = start(binary, "--cache-dir", cache_dir)
        try:
            first = first_turn(base)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        proc, base = start(binary, "--cache-dir", cache_dir)
        try:
            second = second_turn(base, first)
            cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
            assert cached >= first["usage"]["prompt_tokens"], (cached, first["usage"])
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        print("serve: a restarted server resumes a conversation from --cache-dir")
    finally:
        shutil.rmtree(cache_dir)


def check_limits(binary):
    """A request past its deadline ends with 504 (plain) or a timeout error event (streamed); a
    prompt longer than --ctx is refused with 400."""
    proc, base = start(binary, "--timeout", "1", "--ctx", "1024", "--parallel", "2")
    try:
        long_run = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4000,
                    "temperature": 1.0}
        code, answer = call(base, "/v1/chat/completions", long_run)
        assert code == 504 and answer["error"]["type"] == "timeout", (code, answer)
        chunks = stream_raw_events(base, dict(long_run, stream=True))
        assert chunks[-1]["error"]["type"] == "timeout", chunks[-1]
        assert float(metrics_of(base)["dsv4_requests_timed_out_total"]) == 2
        code, answer = call(base, "/v1/chat/completions",
                            {"messages": [{"role": "user", "content": "word " * 1500}]})
        assert code == 400 and "max_positions" in answer["error"]["message"], (code, answer)
        print("serve: deadlines end requests with 504 / a timeout event; --ctx is enforced")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def stream_raw_events(base, body):
    """Every data event of a stream that may end without [DONE] (an error)."""
    request = urllib.request.Request(f"http://{base}/v1/chat/completions",
                                     data=json.dumps(body).encode())
    request.add_header("Authorization", f"Bearer {KEY}")
    with urllib.request.urlopen(request, timeout=120) as response:
        return [json.loads(line[len("data: "):]) for line in response.read().decode().split("\n")
                if line.startswith("data: ") and line != "data: [DONE]"]


def check_queue_limit(binary):
    """With room for one request, a second one while the first generates is refused with 503."""
    proc, base = start(binary, "--queue", "1")
    try:
        host, port = base.split(":")
        busy = http.client.HTTPConnection(host, int(port), timeout=60)
        busy.request("POST", "/v1/chat/completions",
                      json.dumps({"messages": [{"role": "user", "content": "Hi"}],
                                  "max_tokens": 400, "stream": True}),
                      {"Authorization": f"Bearer {KEY}"})
        response = busy.getresponse()
        response.read(100)  # generating now
        request = urllib.request.Request(
            f"http://{base}/v1/chat/completions",
            data=json.dumps({"messages": [{"role": "user", "content": "Hi"}]}).encode())
        request.add_header("Authorization", f"Bearer {KEY}")
        try:
            urllib.request.urlopen(request, timeout=60)
            raise AssertionError("a request beyond the queue was admitted")
        except urllib.error.HTTPError as error:
            assert error.code == 503 and error.headers["Retry-After"] == "1", error.code
            assert "busy" in json.loads(error.read())["error"]["message"]
        busy.close()
        print("serve: a full queue answers 503 with Retry-After")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main()
