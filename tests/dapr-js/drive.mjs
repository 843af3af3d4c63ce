// Dapr's JavaScript SDK, unchanged, against hubflow's HTTP API.
//
//   node tests/dapr-js/drive.mjs PORT
//
// Prints one JSON line per step, {"step": name, "ok": true|false, ...} with
// "err" when the step failed and what it saw, and exits 0 only when every
// step passed. tests/integration/dapr_sdk_test.cpp runs it against a real
// broker with a Redis state store named "statestore" and checks the MQTT
// side (topics sdk/...) itself; its rule on sdk/partial refuses {"ok": 1}.
import { CommunicationProtocolEnum, DaprClient, LogLevel } from "@dapr/dapr";

const port = process.argv[2];
if (!port) {
  console.error("usage: node drive.mjs PORT");
  process.exit(2);
}

const client = new DaprClient({
  daprHost: "127.0.0.1",
  daprPort: String(port),
  communicationProtocol: CommunicationProtocolEnum.HTTP,
  logger: { level: LogLevel.Error },
});

const store = "statestore";
let failures = 0;

function text(e) {
  return e instanceof Error ? e.message : String(e);
}

/// Runs `fn`; it returns what the step saw (printed), or throws why it
/// failed.
async function step(name, fn) {
  try {
    const saw = (await fn()) ?? {};
    console.log(JSON.stringify({ step: name, ok: true, ...saw }));
  } catch (e) {
    failures++;
    console.log(JSON.stringify({ step: name, ok: false, err: text(e) }));
  }
}

function expect(condition, what) {
  if (!condition) throw new Error(what);
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

// The SDK's calls answer {} or {error}; some throw instead.
function check(result, what) {
  if (result && result.error) throw new Error(`${what}: ${text(result.error)}`);
}

await step("health", async () => {
  const healthy = await client.health.isHealthy();
  expect(healthy === true, `isHealthy() returned ${healthy}`);
  return { healthy };
});

await step("state.save with metadata ttlInSeconds", async () => {
  check(await client.state.save(store, [{ key: "sdk-ttl", value: { lives: "briefly" } }],
                                { metadata: { ttlInSeconds: "120" } }),
        "save");
  check(await client.state.save(store, [
    { key: "sdk-a", value: { name: "Tatooine", test: 123 } },
    { key: "sdk-b", value: "Death Star" },
  ]), "save");
});

await step("state.get", async () => {
  const a = await client.state.get(store, "sdk-a");
  expect(same(a, { name: "Tatooine", test: 123 }), `sdk-a is ${JSON.stringify(a)}`);
  const missing = await client.state.get(store, "sdk-missing");
  expect(missing === "", `a missing key gave ${JSON.stringify(missing)}`);
  return { value: a };
});

let etagB;
await step("state.getBulk", async () => {
  const items = await client.state.getBulk(store, ["sdk-a", "sdk-b", "sdk-missing"]);
  expect(Array.isArray(items) && items.length === 3, `got ${JSON.stringify(items)}`);
  const byKey = Object.fromEntries(items.map((i) => [i.key, i]));
  expect(byKey["sdk-b"].data === "Death Star", `sdk-b: ${JSON.stringify(byKey["sdk-b"])}`);
  expect(byKey["sdk-a"].data.test === 123, `sdk-a: ${JSON.stringify(byKey["sdk-a"])}`);
  expect(!("data" in byKey["sdk-missing"]), "sdk-missing has data");
  etagB = byKey["sdk-b"].etag;
  expect(typeof etagB === "string" && etagB.length > 0, "no etag for sdk-b");
  return { items: items.length, etag: etagB };
});

await step("state.delete with etag", async () => {
  const stale = await client.state.delete(store, "sdk-b", { etag: "999" });
  expect(stale.error, "a stale etag was accepted");
  check(await client.state.delete(store, "sdk-b", { etag: etagB }), "delete");
  const gone = await client.state.get(store, "sdk-b");
  expect(gone === "", `sdk-b still is ${JSON.stringify(gone)}`);
  return { staleRefused: true };
});

await step("state.transaction", async () => {
  await client.state.transaction(store, [
    { operation: "upsert", request: { key: "sdk-tx", value: { from: "transaction" } } },
    { operation: "delete", request: { key: "sdk-a" } },
  ]);
  const tx = await client.state.get(store, "sdk-tx");
  expect(same(tx, { from: "transaction" }), `sdk-tx is ${JSON.stringify(tx)}`);
  const a = await client.state.get(store, "sdk-a");
  expect(a === "", `sdk-a still is ${JSON.stringify(a)}`);
});

await step("pubsub.publish with metadata qos and retain", async () => {
  check(await client.pubsub.publish("hub", "sdk/single", { n: 1 },
                                    { metadata: { qos: "1", retain: "true" } }),
        "publish");
});

await step("pubsub.publishBulk", async () => {
  const res = await client.pubsub.publishBulk("hub", "sdk/bulk", [
    "first",
    { entryID: "second", event: "second", contentType: "text/plain", metadata: { qos: "0" } },
    { entryID: "third", event: { n: 3 }, contentType: "application/json",
      metadata: { retain: "true" } },
  ], { qos: "1" });
  expect(res.failedMessages.length === 0,
         `failed: ${JSON.stringify(res.failedMessages.map((f) => text(f.error)))}`);
  return { failed: 0 };
});

// The test's hub has a rule on sdk/partial that passes {"ok": 1} on to a
// Redis endpoint that is down (and drops the rest): the hub refuses that
// entry only, and the SDK must say which.
await step("pubsub.publishBulk with an entry the hub refuses", async () => {
  const res = await client.pubsub.publishBulk("hub", "sdk/partial", [
    { entryID: "p-ok", event: { ok: 0 }, contentType: "application/json" },
    { entryID: "p-bad", event: { ok: 1 }, contentType: "application/json" },
  ], { qos: "1" });
  const failed = res.failedMessages.map((f) => f.message.entryID);
  expect(same(failed, ["p-bad"]), `failed: ${JSON.stringify(failed)}`);
  return { failed };
});

await step("pubsub.publishBulk to a pubsub that does not exist", async () => {
  const res = await client.pubsub.publishBulk("nohub", "sdk/nowhere", ["x", "y"]);
  expect(res.failedMessages.length === 2,
         `${res.failedMessages.length} of 2 reported failed`);
  return { failed: res.failedMessages.length };
});

await step("metadata.set", async () => {
  const done = await client.metadata.set("sdk-attribute", "set by the JS SDK");
  expect(done === true, `set() returned ${done}`);
});

await step("metadata.get", async () => {
  const meta = await client.metadata.get();
  expect(meta.id === "hubflow", `id is ${meta.id}`);
  expect(meta.extended?.["sdk-attribute"] === "set by the JS SDK",
         `extended is ${JSON.stringify(meta.extended)}`);
  const store_ = (meta.components ?? []).find((c) => c.name === store);
  expect(store_ && store_.type === "state.redis",
         `components: ${JSON.stringify(meta.components)}`);
  return { extended: meta.extended };
});

await step("health after everything", async () => {
  expect((await client.health.isHealthy()) === true, "not healthy");
});

await client.stop();
process.exit(failures === 0 ? 0 : 1);
