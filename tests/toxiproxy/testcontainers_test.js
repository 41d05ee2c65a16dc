// @testcontainers/toxiproxy (from npm, written by nobody here) runs wrench's image as
// it runs Toxiproxy's: only the image name differs. First as Testcontainers starts
// it, without privileges: the API answers on the mapped port, a latency toxic adds
// its latency, segment toxics are refused and the log says once that wrench fell back
// to stream toxics. Then with NET_ADMIN and /dev/net/tun: the latency again, and a
// segment toxic dropping the first SYN-ACK makes connect take about a second, until
// it is removed. Run by container_test.sh (DOCKER_HOST is podman's socket); prints one
// line per check, exits non-zero on the first failure.
"use strict";

const net = require("net");
const assert = require("assert");
const { ToxiProxyContainer } = require("@testcontainers/toxiproxy");

const IMAGE = process.env.WRENCH_IMAGE;
// This namespace as the containers see it (the bridge's gateway).
const UPSTREAM_HOST = process.env.WRENCH_UPSTREAM_HOST;
const FALLBACK = "falling back to stream toxics only";

function echoServer() {
  return new Promise((resolve) => {
    const server = net.createServer((sock) => {
      sock.on("error", () => {});
      sock.pipe(sock);
    });
    server.listen(0, "0.0.0.0", () => resolve(server));
  });
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function connect(host, port) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const started = process.hrtime.bigint();
      const sock = net.connect({ host, port });
      sock.once("connect", () => resolve({ sock, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
      sock.once("error", reject);
    }),
    10000,
    `connect to ${host}:${port}`,
  );
}

// Sends `data` and resolves with the time until all of it came back.
function roundTrip(sock, data) {
  return withTimeout(
    new Promise((resolve, reject) => {
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
    }),
    10000,
    "round trip",
  );
}

// What the container wrote so far: its log stream, read until `until` appears or for
// at most `ms`.
async function containerLog(container, until, ms = 5000) {
  const stream = await container.logs();
  let text = "";
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    stream.on("data", (chunk) => {
      text += chunk.toString();
      if (text.includes(until)) {
        clearTimeout(timer);
        resolve();
      }
    });
    stream.on("end", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  stream.destroy();
  return text;
}

function count(text, what) {
  return text.split(what).length - 1;
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

// Measures a 300 ms downstream latency toxic on an open connection; `label` names the run.
async function latencyAdds300Ms(proxy, label) {
  await check(`latency toxic adds its latency through the mapped port (${label})`, async () => {
    const { sock } = await connect(proxy.host, proxy.port);
    const before = await roundTrip(sock, Buffer.from("a"));
    const toxic = await proxy.instance.addToxic({
      name: "latency", type: "latency", stream: "downstream", toxicity: 1,
      attributes: { latency: 300, jitter: 0 },
    });
    const during = await roundTrip(sock, Buffer.from("b"));
    await toxic.remove();
    const after = await roundTrip(sock, Buffer.from("c"));
    sock.destroy();
    console.log(`# ${label}: round trip ${before.toFixed(1)} ms, with latency 300: ${during.toFixed(1)} ms, ` +
                `after removing it: ${after.toFixed(1)} ms`);
    assert.ok(during - before >= 290 && during < 1000, `with latency: ${during} ms (before: ${before} ms)`);
    assert.ok(after < 100, `after removing it: ${after} ms`);
  });
}

const SEGMENT_TOXIC = {
  name: "synack", type: "segment", stream: "downstream", toxicity: 1,
  attributes: { rule: "drop flags=SYN+ACK nth=1" },
};

async function main() {
  assert.ok(IMAGE && UPSTREAM_HOST, "WRENCH_IMAGE and WRENCH_UPSTREAM_HOST are set by container_test.sh");
  const echo = await echoServer();
  const upstream = `${UPSTREAM_HOST}:${echo.address().port}`;

  // ---- as Testcontainers starts Toxiproxy: no added capability, no device ----
  let container;
  await check("ToxiProxyContainer starts the image (waits for GET /version)", async () => {
    container = await new ToxiProxyContainer(IMAGE).start();
    const v = await container.client.getVersion();
    assert.match(v, /"version"/);
  });
  let proxy;
  await check("createProxy listens on 0.0.0.0:8666, mapped to a host port", async () => {
    proxy = await container.createProxy({ name: "echo", upstream });
    assert.strictEqual(proxy.instance.listen, "0.0.0.0:8666");
    assert.notStrictEqual(proxy.port, 8666);
  });
  await latencyAdds300Ms(proxy, "no NET_ADMIN");
  await check("without NET_ADMIN a segment toxic is refused, naming the missing TUN", async () => {
    await assert.rejects(proxy.instance.addToxic(SEGMENT_TOXIC), (e) => {
      assert.match(String(e), /400/);
      return true;
    });
    const text = await containerLog(container, "wrench: ready");
    assert.strictEqual(count(text, FALLBACK), 1, text);
    assert.match(text, /--cap-add NET_ADMIN --device \/dev\/net\/tun/);
    console.log(`# ${text.split("\n").find((l) => l.includes(FALLBACK))}`);
  });
  await check("setEnabled(false) closes the proxy, setEnabled(true) opens it", async () => {
    await proxy.setEnabled(false);
    await assert.rejects(connect(proxy.host, proxy.port).then(({ sock }) => roundTrip(sock, Buffer.from("x"))));
    await proxy.setEnabled(true);
    const { sock } = await connect(proxy.host, proxy.port);
    await roundTrip(sock, Buffer.from("y"));
    sock.destroy();
  });
  await container.stop();

  // ---- with NET_ADMIN and the TUN device: segment toxics on DNATed connections ----
  await check("ToxiProxyContainer starts the image with NET_ADMIN and /dev/net/tun", async () => {
    const c = new ToxiProxyContainer(IMAGE).withAddedCapabilities("NET_ADMIN");
    // Node's Testcontainers has no withDevices: the Docker API's HostConfig takes it.
    c.hostConfig.Devices = [{ PathOnHost: "/dev/net/tun", PathInContainer: "/dev/net/tun", CgroupPermissions: "rwm" }];
    // A container's namespace starts with the IPv4 settings of the host's, where Docker
    // and podman turn forwarding on for their bridge. podman runs here in a namespace
    // of the test's, so the host's (forwarding off) is what containers start with.
    c.hostConfig.Sysctls = { "net.ipv4.ip_forward": "1" };
    container = await c.start();
    const text = await containerLog(container, "wrench: ready");
    assert.strictEqual(count(text, FALLBACK), 0, text);
  });
  await check("createProxy on 0.0.0.0 is DNATed into wrench's TUN", async () => {
    proxy = await container.createProxy({ name: "echo", upstream });
    const text = await containerLog(container, "in the TUN");
    assert.match(text, /proxy echo: connections to 0\.0\.0\.0:8666 .*are DNATed to/, text);
    console.log(`# ${text.split("\n").find((l) => l.includes("are DNATed to"))}`);
  });
  await latencyAdds300Ms(proxy, "NET_ADMIN");
  await check("a segment toxic dropping the first SYN-ACK makes connect take about a second", async () => {
    const clean = await connect(proxy.host, proxy.port);
    clean.sock.destroy();
    const toxic = await proxy.instance.addToxic(SEGMENT_TOXIC);
    assert.strictEqual(toxic.type, "segment");
    const { sock, ms } = await connect(proxy.host, proxy.port);
    console.log(`# connect without the toxic: ${clean.ms.toFixed(1)} ms, with the first SYN-ACK dropped: ${ms.toFixed(1)} ms`);
    assert.ok(ms >= 900 && ms < 3000, `connect took ${ms} ms`);
    const rt = await roundTrip(sock, Buffer.from("after the retransmitted SYN"));
    assert.ok(rt < 100, `round trip ${rt} ms`);
    sock.destroy();
    await toxic.remove();
    const again = await connect(proxy.host, proxy.port);
    assert.ok(again.ms < 500, `connect after removing the toxic took ${again.ms} ms`);
    again.sock.destroy();
  });
  await container.stop();
  echo.close();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.log(`not ok - ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
