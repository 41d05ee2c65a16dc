// toxiproxy-node-client (from npm, written by nobody here) drives `wrench serve` as it
// would drive Toxiproxy: it creates a proxy, adds a latency toxic and measures it on
// real connections, adds reset_peer and sees ECONNRESET, adds a segment toxic that
// drops the first SYN-ACK and sees the kernel's connect take about a second, removes
// the toxics and sees clean transfers. Run by toxiproxy_client_test.sh inside a
// network namespace; prints one line per check, exits non-zero on the first failure.
"use strict";

const net = require("net");
const assert = require("assert");
const { Toxiproxy } = require("toxiproxy-node-client");

const API = process.env.WRENCH_API || "http://127.0.0.1:8474";
const TUN_LISTEN = "10.89.0.2:6000"; // inside wrench's TUN subnet: segment toxics work

function echoServer() {
  return new Promise((resolve) => {
    // reset_peer resets the server's side too: its socket errors are expected.
    const server = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.pipe(sock);
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

function connect(host, port) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const sock = net.connect({ host, port });
    sock.once("connect", () => resolve({ sock, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    sock.once("error", reject);
  });
}

// Sends `data` and resolves with the time until all of it came back.
function roundTrip(sock, data) {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    let got = Buffer.alloc(0);
    const onData = (chunk) => {
      got = Buffer.concat([got, chunk]);
      if (got.length >= data.length) {
        sock.off("data", onData);
        sock.off("error", reject);
        if (!got.equals(data)) return reject(new Error("echo differs"));
        resolve(Number(process.hrtime.bigint() - started) / 1e6);
      }
    };
    sock.on("data", onData);
    sock.once("error", reject);
    sock.write(data);
  });
}

function hostPort(listen) {
  const i = listen.lastIndexOf(":");
  return [listen.slice(0, i), Number(listen.slice(i + 1))];
}

async function check(name, fn) {
  try {
    await fn();
    console.log(`ok - ${name}`);
  } catch (e) {
    console.log(`not ok - ${name}: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  }
}

async function main() {
  const echo = await echoServer();
  const upstream = `127.0.0.1:${echo.address().port}`;
  const toxiproxy = new Toxiproxy(API);

  await check("version answers", async () => {
    const v = await toxiproxy.getVersion();
    assert.match(v, /"version"/);
  });

  let proxy;
  await check("create a proxy on a TUN address", async () => {
    proxy = await toxiproxy.createProxy({ name: "echo", listen: TUN_LISTEN, upstream });
    assert.strictEqual(proxy.name, "echo");
    assert.strictEqual(proxy.listen, TUN_LISTEN);
    assert.strictEqual(proxy.enabled, true);
  });
  const [host, port] = hostPort(proxy.listen);

  await check("a second proxy of the same name is refused (409)", async () => {
    await assert.rejects(toxiproxy.createProxy({ name: "echo", listen: "127.0.0.1:0", upstream }), /409/);
  });

  let lo;
  await check("create a proxy on loopback (kernel sockets)", async () => {
    lo = await toxiproxy.createProxy({ name: "echo_lo", listen: "127.0.0.1:0", upstream });
    assert.notStrictEqual(hostPort(lo.listen)[1], 0);
    const all = await toxiproxy.getAll();
    assert.deepStrictEqual(Object.keys(all).sort(), ["echo", "echo_lo"]);
  });

  await check("clean transfer without toxics", async () => {
    const { sock } = await connect(host, port);
    const ms = await roundTrip(sock, Buffer.from("hello"));
    assert.ok(ms < 100, `round trip ${ms} ms`);
    sock.destroy();
  });

  for (const [label, p] of [["TUN", proxy], ["loopback", lo]]) {
    await check(`latency toxic adds its latency on real connections (${label})`, async () => {
      const [h, pt] = hostPort(p.listen);
      const { sock } = await connect(h, pt);
      const before = await roundTrip(sock, Buffer.from("a"));
      const toxic = await p.addToxic({
        name: "latency", type: "latency", stream: "downstream", toxicity: 1,
        attributes: { latency: 300, jitter: 0 },
      });
      assert.strictEqual(toxic.name, "latency");
      assert.deepStrictEqual(toxic.attributes, { latency: 300, jitter: 0 });
      const during = await roundTrip(sock, Buffer.from("b"));
      assert.ok(during >= 295 && during < 1000, `with latency: ${during} ms (before: ${before} ms)`);
      await toxic.remove();
      const after = await roundTrip(sock, Buffer.from("c"));
      assert.ok(after < 100, `after removing it: ${after} ms`);
      sock.destroy();
    });
  }

  await check("reset_peer makes the client see ECONNRESET", async () => {
    const toxic = await proxy.addToxic({
      name: "reset", type: "reset_peer", stream: "downstream", toxicity: 1, attributes: { timeout: 0 },
    });
    const { sock } = await connect(host, port);
    const err = await new Promise((resolve) => {
      sock.once("error", resolve);
      sock.once("close", () => resolve(new Error("closed without an error")));
      sock.write("hi");
    });
    assert.strictEqual(err.code, "ECONNRESET", String(err));
    await toxic.remove();
  });

  await check("a segment toxic dropping the first SYN-ACK makes connect take about a second", async () => {
    const toxic = await proxy.addToxic({
      name: "synack", type: "segment", stream: "downstream", toxicity: 1,
      attributes: { rule: "drop flags=SYN+ACK nth=1" },
    });
    assert.strictEqual(toxic.type, "segment");
    const { sock, ms } = await connect(host, port);
    assert.ok(ms >= 900 && ms < 3000, `connect took ${ms} ms`);
    const rt = await roundTrip(sock, Buffer.from("after the retransmitted SYN"));
    assert.ok(rt < 100, `then the connection is clean: ${rt} ms`);
    sock.destroy();
    await toxic.remove();
  });

  await check("with every toxic removed, transfers are clean and fast", async () => {
    const fresh = await toxiproxy.get("echo");
    const { sock, ms } = await connect(host, port);
    assert.ok(ms < 500, `connect took ${ms} ms`);
    const data = Buffer.alloc(1 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7919) & 0xff;
    await roundTrip(sock, data);
    sock.destroy();
    assert.strictEqual(fresh.enabled, true);
  });

  await check("toxics on one stream add up: two latency toxics of 300 ms make 600 ms", async () => {
    const { sock } = await connect(host, port);
    const first = await proxy.addToxic({
      name: "first", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 300, jitter: 0 },
    });
    const second = await proxy.addToxic({
      name: "second", type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 300, jitter: 0 },
    });
    const ms = await roundTrip(sock, Buffer.from("twice"));
    assert.ok(ms >= 595 && ms < 1500, `with two latency toxics: ${ms} ms`);
    await first.remove();
    await second.remove();
    sock.destroy();
  });

  await check("Proxy Should update a proxy (upstream somehost:12345, resolved per connection)", async () => {
    const other = await toxiproxy.createProxy({ name: "update", listen: "127.0.0.1:0", upstream });
    const updated = await other.update({ enabled: true, listen: other.listen, upstream: "somehost:12345" });
    assert.strictEqual(updated.upstream, "somehost:12345");
    assert.strictEqual(updated.enabled, true);
    await other.remove();
  });

  await check("a proxy created without listen listens on [::]", async () => {
    const any = await toxiproxy.createProxy({ name: "any", upstream });
    assert.match(any.listen, /^\[::\]:\d+$/);
    const { sock } = await connect("127.0.0.1", hostPort(any.listen)[1]);
    await roundTrip(sock, Buffer.from("v4 through [::]"));
    sock.destroy();
    await any.remove();
  });

  await check("disable and re-enable with update(), then reset()", async () => {
    const down = await proxy.update({ enabled: false });
    assert.strictEqual(down.enabled, false);
    await assert.rejects(connect(host, port), /ECONNREFUSED/);
    await toxiproxy.reset();
    const up = await toxiproxy.get("echo");
    assert.strictEqual(up.enabled, true);
    const { sock } = await connect(host, port);
    await roundTrip(sock, Buffer.from("back"));
    sock.destroy();
  });

  await check("populate keeps existing proxies and adds new ones", async () => {
    const proxies = await toxiproxy.populate([
      { name: "echo", listen: TUN_LISTEN, upstream },
      { name: "echo2", listen: "127.0.0.1:0", upstream },
    ]);
    assert.deepStrictEqual(Object.keys(proxies).sort(), ["echo", "echo2"]);
  });

  await check("remove the proxies", async () => {
    for (const p of Object.values(await toxiproxy.getAll())) await p.remove();
    assert.deepStrictEqual(Object.keys(await toxiproxy.getAll()), []);
  });

  echo.close();
}

main().catch((e) => {
  console.log(`not ok - ${e && e.stack ? e.stack : e}`);
  process.exit(1);
});
