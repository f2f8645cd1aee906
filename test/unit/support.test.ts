// Checks the test-support servers themselves (test/support/*), so that other tests
// can trust them: a broken fixture would otherwise show up as a confusing product failure.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { makeCerts, type TestCerts } from '../support/certs.js';
import { startHttpServer, type TestServer } from '../support/http-server.js';
import { startProxy, type TestProxy } from '../support/proxy.js';

let dir = '';
let data = Buffer.alloc(0);
let srv: TestServer | undefined;
let tlsSrv: TestServer | undefined;
let proxy: TestProxy | undefined;
let certs: TestCerts;

interface Got { status: number; headers: http.IncomingHttpHeaders; body: Buffer; complete: boolean }

/** GET/HEAD/... collecting whatever body arrives, even if the connection breaks mid-way. */
function fetchRaw(url: string, opts: https.RequestOptions = {}): Promise<Got> {
  const mod = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { agent: false, ...opts }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', () => { /* "aborted": reported through complete=false */ });
      res.on('close', () => resolve({
        status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), complete: res.complete,
      }));
    });
    req.on('error', reject);
    req.end();
  });
}

test.before(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'support-test-'));
  data = randomBytes(256 * 1024 + 7); // odd size: catches off-by-one in ranges / halves
  await fsp.mkdir(path.join(dir, 'www'));
  await fsp.writeFile(path.join(dir, 'www', 'a.bin'), data);
  certs = await makeCerts(dir);
  srv = await startHttpServer({ root: path.join(dir, 'www') });
  tlsSrv = await startHttpServer({ root: path.join(dir, 'www'), tls: { key: certs.keyFile, cert: certs.certFile } });
  proxy = await startProxy(dir);
});

test.after(async () => {
  await srv?.close();
  await tlsSrv?.close();
  await proxy?.close();
  if (dir) await fsp.rm(dir, { recursive: true, force: true });
});

test('plain GET, HEAD, 404, hits and request log', async () => {
  const s = srv!;
  const r = await fetchRaw(s.url('/a.bin'));
  assert.is(r.status, 200);
  assert.is(r.headers['content-length'], String(data.length));
  assert.ok(r.body.equals(data));
  const h = await fetchRaw(s.url('a.bin'), { method: 'HEAD' });
  assert.is(h.status, 200);
  assert.is(h.headers['content-length'], String(data.length));
  assert.is(h.body.length, 0);
  assert.is((await fetchRaw(s.url('/missing'))).status, 404);
  assert.is((await fetchRaw(s.url('/../etc/passwd'))).status, 404);
  assert.is(s.hits('/a.bin'), 1); // the HEAD does not count
  assert.ok(s.requests.some((q) => q.method === 'HEAD' && q.path === '/a.bin'));
});

test('nohead, range, redirect, status, needheader', async () => {
  const s = srv!;
  assert.is((await fetchRaw(s.url('/nohead/a.bin'), { method: 'HEAD' })).status, 405);
  assert.is((await fetchRaw(s.url('/nohead/a.bin'))).status, 200);
  const r = await fetchRaw(s.url('/a.bin'), { headers: { Range: 'bytes=10-19' } });
  assert.is(r.status, 206);
  assert.is(r.headers['content-range'], `bytes 10-19/${data.length}`);
  assert.ok(r.body.equals(data.subarray(10, 20)));
  const tail = await fetchRaw(s.url('/a.bin'), { headers: { Range: 'bytes=262144-' } });
  assert.ok(tail.body.equals(data.subarray(262144)));
  assert.is((await fetchRaw(s.url('/a.bin'), { headers: { Range: 'bytes=999999-' } })).status, 416);
  const red = await fetchRaw(s.url('/redirect/a.bin'));
  assert.is(red.status, 302);
  assert.is(red.headers.location, '/a.bin');
  assert.is((await fetchRaw(s.url('/status/503'))).status, 503);
  assert.is((await fetchRaw(s.url('/needheader/a.bin'))).status, 403);
  assert.is((await fetchRaw(s.url('/needheader/a.bin'), { headers: { 'X-Token': 't0k' } })).status, 200);
});

test('truncate gives fewer bytes than Content-Length', async () => {
  const r = await fetchRaw(srv!.url('/truncate/a.bin'));
  assert.is(r.status, 200);
  assert.is(r.headers['content-length'], String(data.length));
  assert.not.ok(r.complete);
  assert.is(r.body.length, Math.floor(data.length / 2));
  assert.ok(r.body.equals(data.subarray(0, r.body.length)));
});

test('auth', async () => {
  const s = srv!;
  const no = await fetchRaw(s.url('/auth/a.bin'));
  assert.is(no.status, 401);
  assert.match(String(no.headers['www-authenticate']), /^Basic/);
  assert.is((await fetchRaw(s.url('/auth/a.bin'), { auth: 'u:wrong' })).status, 401);
  const ok = await fetchRaw(s.url('/auth/a.bin'), { auth: 'u:p@ss' });
  assert.is(ok.status, 200);
  assert.ok(ok.body.equals(data));
});

test('slow is paced, hang never answers, close() still works', async () => {
  const s = srv!;
  const t0 = Date.now();
  const r = await fetchRaw(s.url('/slow/a.bin'), { headers: { Range: 'bytes=0-196607' } }); // 3 chunks
  assert.ok(r.body.equals(data.subarray(0, 196608)));
  assert.ok(Date.now() - t0 >= 150, `slow took only ${Date.now() - t0} ms`);
  const hung = await new Promise<string>((resolve) => {
    const req = http.get(s.url('/hang/a.bin'), { agent: false }, () => resolve('answered'));
    req.setTimeout(300, () => { req.destroy(); resolve('timeout'); });
    req.on('error', () => { /* from destroy() */ });
  });
  assert.is(hung, 'timeout');
  // A second server with a request left hanging must still close promptly.
  const s2 = await startHttpServer({ root: dir });
  http.get(s2.url('/hang/x'), { agent: false }).on('error', () => { /* killed by close() */ });
  await new Promise((r) => setTimeout(r, 100));
  await s2.close();
});

test('https with the test CA; CA dir is hashed', async () => {
  const ca = await fsp.readFile(certs.caFile);
  const ok = await fetchRaw(tlsSrv!.url('/a.bin'), { ca });
  assert.is(ok.status, 200);
  assert.ok(ok.body.equals(data));
  assert.ok(tlsSrv!.origin.startsWith('https://127.0.0.1:'));
  // Without the CA the certificate must be rejected (proves TLS really is verified).
  await fetchRaw(tlsSrv!.url('/a.bin')).then(() => assert.unreachable('untrusted cert accepted'), () => {});
  const { stdout } = await promisify(execFile)('openssl', ['verify', '-CApath', certs.caDir, certs.certFile]);
  assert.match(stdout, /: OK/);
});

test('plain http through tinyproxy', async () => {
  const p = new URL(proxy!.url);
  const target = srv!.url('/a.bin');
  const r = await fetchRaw(`http://${p.host}${new URL(target).pathname}`, {
    path: target, // absolute-form request target = proxy request
    headers: { Host: new URL(target).host },
  });
  assert.is(r.status, 200);
  assert.ok(r.body.equals(data));
  assert.ok(proxy!.log().includes(`GET ${target}`), proxy!.log());
});

test('https CONNECT through tinyproxy', async () => {
  const p = new URL(proxy!.url);
  const origin = new URL(tlsSrv!.origin);
  const socket = await new Promise<Socket>((resolve, reject) => {
    const req = http.request({ host: p.hostname, port: p.port, method: 'CONNECT', path: origin.host, agent: false });
    req.on('connect', (res, sock) => (res.statusCode === 200 ? resolve(sock) : reject(new Error(`CONNECT ${res.statusCode}`))));
    req.on('error', reject);
    req.end();
  });
  const ca = await fsp.readFile(certs.caFile);
  const reply = await new Promise<Buffer>((resolve, reject) => {
    // host (not servername: SNI must not be an IP) is what the certificate is checked against.
    const t = tls.connect({ socket, ca, host: origin.hostname }, () => {
      t.write(`GET /a.bin HTTP/1.1\r\nHost: ${origin.host}\r\nConnection: close\r\n\r\n`);
    });
    const chunks: Buffer[] = [];
    t.on('data', (c: Buffer) => chunks.push(c));
    t.on('end', () => resolve(Buffer.concat(chunks)));
    t.on('error', reject);
  });
  const split = reply.indexOf('\r\n\r\n');
  assert.match(reply.subarray(0, split).toString(), /^HTTP\/1\.1 200/);
  assert.ok(reply.subarray(split + 4).equals(data));
  assert.ok(proxy!.log().includes(`CONNECT ${origin.host}`), proxy!.log());
});

test.run();
