// dsv4 serve through the official openai npm client: models, a chat completion, the same answer
// streamed, API key enforcement and an error for bad input.
// usage: node openai_client.mjs HOST:PORT API_KEY
import assert from "node:assert/strict";
import OpenAI from "openai";

const [base, key] = process.argv.slice(2);
const baseURL = `http://${base}/v1`;
const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0 });

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
console.log("openai client: models, completion, stream, key and errors as expected");
