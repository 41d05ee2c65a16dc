// A keep-alive HTTP client as applications write it: one http.Agent({keepAlive: true}),
// a request, a pause of REUSE_MS with the connection idle in the pool, a second request.
// Prints "ok" or the error's code and exits 0 or 1.
//   node keepalive_client.js URL [REUSE_MS]
'use strict';
const http = require('http');

const url = process.argv[2];
const reuseMs = Number(process.argv[3] || 2000);
const agent = new http.Agent({keepAlive: true, maxSockets: 1});

function get() {
  return new Promise((resolve, reject) => {
    const req = http.get(url, {agent}, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(10000, () => req.destroy(new Error('timeout')));
  });
}

(async () => {
  try {
    await get();
    await new Promise((r) => setTimeout(r, reuseMs));
    await get();
    console.log('ok');
    process.exit(0);
  } catch (e) {
    console.log(e.code || e.message);
    process.exit(1);
  }
})();
