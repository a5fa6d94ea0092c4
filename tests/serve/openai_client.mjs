// dsv4 serve through the official openai npm client.
//   basic:     models, a chat completion, the same answer streamed, a streamed text completion,
//              API key enforcement and errors for bad input;
//   tools:     (server replying with a DSML tool call) tool_calls plain and streamed, then the
//              round trip with the tool's result;
//   reasoning: (server replying "...</think>4" in thinking mode) reasoning_content plain and
//              streamed.
// usage: node openai_client.mjs HOST:PORT API_KEY [basic|tools|reasoning]
import assert from "node:assert/strict";
import OpenAI from "openai";

const [base, key, mode = "basic"] = process.argv.slice(2);
const baseURL = `http://${base}/v1`;
const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });

if (mode === "tools") {
  const tools = [
    {
      type: "function",
      function: {
        name: "get_time",
        description: "The time in a zone.",
        parameters: { type: "object", properties: { zone: { type: "string" } } },
      },
    },
  ];
  const request = {
    model: "dsv4-demo",
    messages: [{ role: "user", content: "What time is it?" }],
    tools,
    max_tokens: 200,
  };
  const answer = await client.chat.completions.create(request);
  const choice = answer.choices[0];
  assert.equal(choice.finish_reason, "tool_calls");
  const call = choice.message.tool_calls[0];
  assert.equal(call.type, "function");
  assert.equal(call.function.name, "get_time");
  assert.deepEqual(JSON.parse(call.function.arguments), { zone: "UTC" });
  // Streamed: the calls arrive as tool_calls deltas.
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let name = "", args = "", finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices[0]?.delta?.tool_calls ?? []) {
      name += c.function?.name ?? "";
      args += c.function?.arguments ?? "";
    }
    finish = chunk.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(name, "get_time");
  assert.deepEqual(JSON.parse(args), { zone: "UTC" });
  assert.equal(finish, "tool_calls");
  // The round trip: the assistant's call and the tool's result go back in.
  const followUp = await client.chat.completions.create({
    ...request,
    messages: [
      ...request.messages,
      choice.message,
      { role: "tool", tool_call_id: call.id ?? "call_0", content: "12:00" },
    ],
  });
  assert.ok(followUp.choices[0].message);
  console.log("openai client: tool calls plain, streamed and round-tripped");
  process.exit(0);
}

if (mode === "reasoning") {
  const request = {
    model: "dsv4-demo",
    messages: [{ role: "user", content: "2+2?" }],
    max_tokens: 100,
    reasoning_effort: "high",
  };
  const answer = await client.chat.completions.create(request);
  const message = answer.choices[0].message;
  assert.equal(message.reasoning_content, "Two plus two is four.");
  assert.equal(message.content, "4");
  const stream = await client.chat.completions.create({ ...request, stream: true });
  let reasoning = "", content = "";
  for await (const chunk of stream) {
    reasoning += chunk.choices[0]?.delta?.reasoning_content ?? "";
    content += chunk.choices[0]?.delta?.content ?? "";
  }
  assert.equal(reasoning, "Two plus two is four.");
  assert.equal(content, "4");
  console.log("openai client: reasoning_content plain and streamed");
  process.exit(0);
}

const models = await client.models.list();
assert.equal(models.data[0].id, "dsv4-demo");

const request = {
  model: "dsv4-demo",
  messages: [
    { role: "system", content: "Be brief." },
    { role: "user", content: "Hello" },
  ],
  max_tokens: 6,
  seed: 7,
  temperature: 0.8,
};
const answer = await client.chat.completions.create(request);
const message = answer.choices[0].message;
assert.equal(message.role, "assistant");
assert.ok(["stop", "length"].includes(answer.choices[0].finish_reason));
assert.ok(answer.usage.completion_tokens <= 6);

let streamed = "";
const stream = await client.chat.completions.create({ ...request, stream: true });
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
assert.equal(streamed, message.content);

// A long prompt: the server sends SSE keep-alive comments while it prefills; the client skips them.
let longText = "";
const long = await client.chat.completions.create({
  ...request,
  messages: [{ role: "user", content: "word ".repeat(1200) }],
  max_tokens: 3,
  stream: true,
});
for await (const chunk of long) longText += chunk.choices[0]?.delta?.content ?? "";
assert.ok(longText.length > 0);

const completion = { model: "dsv4-demo", prompt: "Once upon a time", max_tokens: 5, seed: 1 };
const plain = await client.completions.create(completion);
let pieces = "";
for await (const chunk of await client.completions.create({ ...completion, stream: true }))
  pieces += chunk.choices[0]?.text ?? "";
assert.equal(pieces, plain.choices[0].text);

const wrongKey = new OpenAI({ baseURL, apiKey: "wrong", maxRetries: 0 });
await assert.rejects(wrongKey.models.list(), (e) => e.status === 401);
await assert.rejects(
  client.chat.completions.create({ ...request, messages: [] }),
  (e) => e.status === 400 && /messages/.test(e.message),
);
await assert.rejects(
  client.chat.completions.create({ ...request, max_tokens: 0 }),
  (e) => e.status === 400,
);
console.log("openai client: models, chat and text completions plain and streamed, key and errors");
