// Local HTTP(S) file server for tests, with path prefixes that simulate misbehaving origins.
//   /nohead/F      HEAD answered with 405 (GET works)
//   /redirect/F    302 to /F
//   /truncate/F    full Content-Length, only the first half of the body, then the socket is destroyed
//   /slow/F        body at ~1 MiB/s (64 KiB every 1/16 s)
//   /hang/F        request accepted, never answered
//   /auth/F        Basic auth u / p@ss required (401 otherwise)
//   /needheader/F  header "X-Token: t0k" required (403 otherwise)
//   /status/NNN    status NNN with an empty body
//   /short/F       full Content-Length, only the first 64 KiB of the body, then the socket is destroyed
//   /stall/F       headers and the first 64 KiB, then nothing more (the connection stays open)
//   /norange/F     Range ignored: always the whole file with 200
//   /html/F        the file served as Content-Type text/html
//   /gzipped/F     the file gzipped on the fly, with Content-Encoding: gzip (Accept-Encoding ignored)
//   /empty/F       200 with an empty body (Content-Length: 0)
//   /authredirect/F  302 to /auth/F with the credentials u / p@ss in the Location's URL
//   /stallget/F    HEAD answered with 405, Range ignored, and the body stalls after 64 KiB
//   /to/URL        302 to the rest of the path, taken as a URL (%-escapes decoded): /to/file:///etc/passwd
//   /droponce/F    the first GET of F under this prefix: half the body, then the socket is destroyed; later ones as plain
//   /dropnorange/F as droponce, and Range is ignored (always the whole file with 200)
//   /dropchange/F  as droponce, and F's ETag changes with every GET (so If-Range never matches)
//   /etagflip/F    F's ETag changes with every request (If-None-Match never matches)
//   /noval/F       no ETag and no Last-Modified: nothing to revalidate with
//   /slowcut/F     as slow, and cut off as truncate: half the body at ~1 MiB/s, then the socket is destroyed
// Plain answers carry a strong ETag ("size-mtime") and Last-Modified, answer If-None-Match /
// If-Modified-Since with 304 and honour If-Range, as Apache and nginx do for static files.
// Files are streamed, never read whole: test images can be hundreds of MiB.
import { createReadStream, promises as fsp } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

export interface RecordedRequest {
  method: string;
  /** request target as received (special prefix and query included) */
  path: string;
  headers: Record<string, string | string[] | undefined>;
  /** whether the whole answer was sent (false: the client went away, or we cut it off) */
  completed: boolean;
}

export interface TestServer {
  /** e.g. http://127.0.0.1:PORT (https:// when tls was given) */
  origin: string;
  url(p: string): string;
  /** number of GETs whose path minus any special prefix (and query) is p, e.g. hits('/a.img')
   *  counts GET /a.img, /slow/a.img, /redirect/a.img...; use `requests` for exact matching.
   *  Conditional GETs (If-None-Match / If-Modified-Since: revalidations) are not counted here */
  hits(p: string): number;
  /** number of conditional GETs (revalidations) of p, counted as hits() counts */
  revalidations(p: string): number;
  requests: RecordedRequest[];
  close(): Promise<void>;
}

const PREFIXES = ['nohead', 'redirect', 'truncate', 'slow', 'hang', 'auth', 'needheader', 'status', 'short', 'stall', 'norange', 'html', 'gzipped', 'empty', 'to', 'authredirect', 'stallget', 'droponce', 'dropnorange', 'dropchange', 'etagflip', 'noval', 'slowcut'] as const;
type Mode = (typeof PREFIXES)[number] | 'plain';

const conditional = (r: RecordedRequest) => r.headers['if-none-match'] !== undefined || r.headers['if-modified-since'] !== undefined;

/** Split "/slow/a/b.img?x" into mode "slow" and file path "/a/b.img". */
function splitTarget(target: string): { mode: Mode; file: string } {
  let p = target.split('?')[0] ?? '/';
  try { p = decodeURIComponent(p); } catch { /* keep it raw; it will 404 */ }
  const m = /^\/([^/]+)(\/.*)$/.exec(p);
  const prefix = PREFIXES.find((x) => x === m?.[1]);
  return prefix && m?.[2] ? { mode: prefix, file: m[2] } : { mode: 'plain', file: p };
}

/** Single "bytes=a-b" / "bytes=a-" / "bytes=-n" range; null = serve whole file, 'bad' = 416. */
function parseRange(h: string | undefined, size: number): { start: number; end: number } | null | 'bad' {
  const m = h ? /^bytes=(\d*)-(\d*)$/.exec(h.trim()) : null;
  if (!m || (m[1] === '' && m[2] === '')) return null; // absent, multi-range or garbage: ignore (RFC 9110 allows)
  let start: number, end: number;
  if (m[1] === '') { start = Math.max(0, size - Number(m[2])); end = size - 1; } // suffix range
  else { start = Number(m[1]); end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1); }
  return start > end || start >= size ? 'bad' : { start, end };
}

/** res.write that resolves once the chunk is handed to the kernel (so we can pace / cut afterwards). */
function flushWrite(res: http.ServerResponse, chunk: Buffer): Promise<void> {
  return new Promise((resolve, reject) => res.write(chunk, (err) => (err ? reject(err) : resolve())));
}

async function readPart(file: string, start: number, length: number): Promise<Buffer> {
  const fh = await fsp.open(file, 'r');
  try {
    const buf = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buf, 0, length, start);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readPem(v: string): Promise<string> {
  return v.includes('-----BEGIN') ? v : fsp.readFile(v, 'utf8'); // accept PEM text or a file path
}

/** Start a server on 127.0.0.1:<random>. tls.key / tls.cert: PEM text or PEM file paths. */
export async function startHttpServer(opts: { root: string; tls?: { key: string; cert: string } }): Promise<TestServer> {
  const root = path.resolve(opts.root);
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const dropped = new Set<string>(); // droponce & co.: targets already cut once
  let flips = 0; // etagflip, dropchange: a new ETag for every request

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const target = req.url ?? '/';
    const record: RecordedRequest = { method, path: target, headers: { ...req.headers }, completed: false };
    requests.push(record);
    res.once('finish', () => (record.completed = true));
    const { mode, file } = splitTarget(target);
    const fail = (code: number, hdrs: http.OutgoingHttpHeaders = {}) => {
      res.writeHead(code, { 'Content-Length': 0, ...hdrs });
      res.end();
    };

    if (mode === 'hang') return; // the socket is destroyed by close()
    if (mode === 'status') {
      const code = Number(file.slice(1));
      return Number.isInteger(code) && code >= 200 && code <= 599 ? fail(code) : fail(400);
    }
    if (mode === 'redirect') return fail(302, { Location: file });
    if (mode === 'to') return fail(302, { Location: file.slice(1) });
    if (mode === 'authredirect') return fail(302, { Location: `${origin.replace('://', '://u:p%40ss@')}/auth${file}` });
    if (mode === 'empty') return fail(200, { 'Content-Type': 'application/octet-stream' });
    if (method !== 'GET' && method !== 'HEAD') return fail(405, { Allow: 'GET, HEAD' });
    if ((mode === 'nohead' || mode === 'stallget') && method === 'HEAD') return fail(405, { Allow: 'GET' });
    if (mode === 'auth') {
      const want = 'Basic ' + Buffer.from('u:p@ss').toString('base64');
      if (req.headers.authorization !== want) return fail(401, { 'WWW-Authenticate': 'Basic realm="test"' });
    }
    if (mode === 'needheader' && req.headers['x-token'] !== 't0k') return fail(403);

    const abs = path.join(root, file); // join normalizes "..", so check we stay inside root
    if (abs !== root && !abs.startsWith(root + path.sep)) return fail(404);
    const st = await fsp.stat(abs).catch(() => null);
    if (!st?.isFile()) return fail(404);

    if (mode === 'gzipped') {
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Encoding': 'gzip' });
      if (method === 'HEAD') return void res.end();
      await pipeline(createReadStream(abs), createGzip(), res).catch(() => { /* client went away */ });
      return;
    }
    const etag = mode === 'noval' ? undefined : mode === 'etagflip' || mode === 'dropchange' ? `"${st.size}-${st.mtimeMs}-${++flips}"` : `"${st.size}-${st.mtimeMs}"`;
    const lastModified = mode === 'noval' ? undefined : st.mtime.toUTCString();
    const validators = { ...(etag ? { ETag: etag } : {}), ...(lastModified ? { 'Last-Modified': lastModified } : {}) };
    // conditional GET (RFC 9110 13.1): If-None-Match first; If-Modified-Since only without it
    const inm = req.headers['if-none-match'];
    const ims = req.headers['if-modified-since'];
    const unchanged = inm !== undefined ? etag !== undefined && inm.split(',').map((t) => t.trim()).includes(etag) : ims !== undefined && lastModified !== undefined && Date.parse(ims) >= Math.floor(st.mtimeMs / 1000) * 1000;
    // a 304 carries no Content-Length (RFC 9110 8.6): a cache would take 0 for the file's
    if (unchanged) return void res.writeHead(304, validators).end();
    const ifRange = req.headers['if-range'] as string | undefined;
    const rangeOk = ifRange === undefined || ifRange === etag || (!ifRange.startsWith('"') && ifRange === lastModified);
    const ignoresRange = mode === 'norange' || mode === 'stallget' || mode === 'dropnorange' || !rangeOk;
    const range = ignoresRange ? null : parseRange(req.headers.range, st.size);
    if (range === 'bad') return fail(416, { 'Content-Range': `bytes */${st.size}` });
    const { start, end } = range ?? { start: 0, end: st.size - 1 };
    const length = end - start + 1;
    res.writeHead(range ? 206 : 200, {
      'Content-Type': mode === 'html' ? 'text/html; charset=utf-8' : 'application/octet-stream',
      'Content-Length': length,
      'Accept-Ranges': 'bytes',
      ...validators,
      ...(range ? { 'Content-Range': `bytes ${start}-${end}/${st.size}` } : {}),
    });
    if (method === 'HEAD' || length === 0) return void res.end();
    const dropNow = (mode === 'droponce' || mode === 'dropnorange' || mode === 'dropchange') && method === 'GET' && !dropped.has(target);
    if (dropNow) {
      dropped.add(target);
      await flushWrite(res, await readPart(abs, start, Math.floor(length / 2))).catch(() => undefined);
      res.socket?.destroy(); // leaves the client short of Content-Length, at half the body
      return;
    }

    if (mode === 'short' || mode === 'stall' || mode === 'stallget') {
      await flushWrite(res, await readPart(abs, start, Math.min(length, 64 * 1024))).catch(() => undefined);
      if (mode === 'short') res.socket?.destroy(); // else: stalls until the client or close() ends it
      return;
    }
    if (mode !== 'truncate' && mode !== 'slow' && mode !== 'slowcut') {
      await pipeline(createReadStream(abs, { start, end }), res).catch(() => { /* client went away */ });
      return;
    }
    // truncate: only the first half; slow: 64 KiB chunks with a pause. Stop if the client goes away.
    const last = mode === 'truncate' || mode === 'slowcut' ? start + Math.floor(length / 2) - 1 : end;
    const rs = createReadStream(abs, { start, end: last, highWaterMark: 64 * 1024 });
    res.on('close', () => rs.destroy());
    try {
      for await (const chunk of rs) {
        if (mode === 'slow' || mode === 'slowcut') await sleep(1000 / 16); // before the write: n chunks take n/16 s as seen by the client
        if (res.destroyed) break;
        await flushWrite(res, chunk as Buffer);
      }
    } catch { /* client went away */ }
    rs.destroy();
    if (mode === 'truncate' || mode === 'slowcut') res.socket?.destroy(); // leaves the client short of Content-Length
    else res.end();
  }

  const listener: http.RequestListener = (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
      else res.destroy();
    });
  };
  const server = opts.tls
    ? https.createServer({ key: await readPem(opts.tls.key), cert: await readPem(opts.tls.cert) }, listener)
    : http.createServer(listener);
  // Track raw sockets so close() also kills /hang, /slow and half-open TLS connections at once.
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const origin = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const norm = (p: string) => (p.startsWith('/') ? p : '/' + p);

  return {
    origin,
    requests,
    url: (p) => origin + norm(p),
    hits: (p) => requests.filter((r) => r.method === 'GET' && !conditional(r) && splitTarget(r.path).file === norm(p)).length,
    revalidations: (p) => requests.filter((r) => r.method === 'GET' && conditional(r) && splitTarget(r.path).file === norm(p)).length,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
        for (const s of sockets) s.destroy();
      }),
  };
}
