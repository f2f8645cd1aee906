// A real squid (apt package "squid") on 127.0.0.1 for the shared-cache tests: a caching
// proxy as an operator would put in front of a cluster. Everything of this instance lives
// in `dir` (config, cache.log, access.log, pid file, core dumps; the cache is in memory),
// and its own service name (-n) keeps its shared-memory segments apart from a system
// squid's: nothing under /var/log/squid or /var/spool/squid is touched.
import { spawn, execFileSync } from 'node:child_process';
import { promises as fsp, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { canConnect, freePort } from './ports.js';

export interface TestSquid {
  port: number;
  /** http://127.0.0.1:PORT, for a variant's PROXY */
  url: string;
  dir: string;
  /** current content of squid's access.log (one line per request: result code, URL...) */
  accessLog(): string;
  /** the access.log lines of `method` requests for `url`, as "RESULT/STATUS" codes,
   *  e.g. ["TCP_MISS/200", "TCP_MEM_HIT/200"] */
  results(url: string, method?: string): string[];
  close(): Promise<void>;
}

export interface SquidOptions {
  /** config lines added to the generated ones (before its http_access and refresh_pattern
   *  rules, so that theirs match first), e.g. 'cache deny all' for a squid that caches nothing */
  extra?: string[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let instances = 0;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Squid started as root drops to cache_effective_user at once, and that user opens the
 *  logs: it must own `dir` and be able to reach it. Debian's squid runs as `proxy`. */
function prepareDir(dir: string): string | undefined {
  if (process.getuid?.() !== 0) return undefined; // a non-root squid stays the invoking user
  let uid: number, gid: number;
  try {
    uid = Number(execFileSync('id', ['-u', 'proxy']).toString());
    gid = Number(execFileSync('id', ['-g', 'proxy']).toString());
  } catch {
    throw new Error('squid tests: there is no user "proxy" (Debian\'s squid package creates it); run test/setup-deps.sh');
  }
  execFileSync('chown', ['-R', `${uid}:${gid}`, dir]);
  for (let d = path.dirname(dir); ; d = path.dirname(d)) {
    const st = statSync(d);
    if (st.uid !== uid && !(st.mode & 0o001)) throw new Error(`squid tests: ${dir} is below ${d}, which the user proxy cannot enter; chmod o+x it, or give startSquid a directory of its own`);
    if (d === path.dirname(d)) break;
  }
  return 'proxy';
}

/** Start squid in the foreground (-N) with its own config in `dir` (created if missing). */
export async function startSquid(dir: string, opts: SquidOptions = {}): Promise<TestSquid> {
  dir = path.resolve(dir);
  await fsp.mkdir(dir, { recursive: true });
  try {
    execFileSync('squid', ['-v'], { stdio: 'ignore' });
  } catch {
    throw new Error('squid tests: squid is not installed; run test/setup-deps.sh (apt-get install squid)');
  }
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(dir, await freePort(), opts.extra ?? []);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

async function startOnce(dir: string, port: number, extra: string[]): Promise<TestSquid> {
  const conf = path.join(dir, 'squid.conf');
  const cacheLog = path.join(dir, 'cache.log');
  const accessLogFile = path.join(dir, 'access.log');
  // Letters and digits only: squid names its /dev/shm segments after it.
  const service = `simpleimagetest${process.pid}n${++instances}`;
  for (const f of [cacheLog, accessLogFile]) await fsp.writeFile(f, '');
  await fsp.writeFile(conf, [
    `http_port 127.0.0.1:${port}`,
    'visible_hostname localhost', // squid refuses to start where it cannot find a host name
    `pid_filename ${path.join(dir, 'squid.pid')}`,
    `cache_log ${cacheLog}`,
    `access_log stdio:${accessLogFile}`,
    'buffered_logs off', // each request's line is in access.log when the answer is complete
    'cache_store_log none',
    `coredump_dir ${dir}`,
    'netdb_filename none', // Debian's default is /var/spool/squid/netdb.state
    'pinger_enable off',
    'shutdown_lifetime 0 seconds', // SIGTERM: done in ~2 s, not after 30 s of draining
    // Memory cache only (no cache_dir): big enough for the test images, a few MiB each.
    'cache_mem 64 MB',
    'maximum_object_size 64 MB',
    'maximum_object_size_in_memory 64 MB',
    ...extra, // before the rules below: the first matching http_access / refresh_pattern wins
    'http_access allow localhost', // squid's built-in ACL: 127.0.0.1 and ::1
    'http_access deny all',
    'refresh_pattern . 0 20% 4320', // Last-Modified heuristics, as squid's own default
  ].join('\n') + '\n');
  const user = prepareDir(dir);
  if (user) await fsp.appendFile(conf, `cache_effective_user ${user}\n`);

  // detached: squid leads its own process group, so close() also reaches any helper it forks.
  const child = spawn('squid', ['-N', '-n', service, '-f', conf], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  let exited: string | null = null;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, sig) => { exited = `exit ${code ?? sig}`; resolve(); });
    child.once('error', (err) => { exited = err.message; resolve(); });
  });
  const read = (f: string) => { try { return readFileSync(f, 'utf8'); } catch { return ''; } };
  const group = (sig: NodeJS.Signals) => { try { process.kill(-child.pid!, sig); } catch { /* gone */ } };
  // A squid killed with SIGKILL leaves its segments behind.
  const removeSegments = () => {
    for (const f of readdirSync('/dev/shm')) if (f.startsWith(service + '-')) rmSync(path.join('/dev/shm', f), { force: true });
  };

  // Safety net: never leave a squid behind if the test process ends without close(). Being
  // in a group of its own, squid does not get the terminal's Ctrl-C: pass such signals on,
  // then let them end this process as they would have.
  const killOnExit = () => { if (exited === null) group('SIGKILL'); removeSegments(); };
  const onSignal = (sig: NodeJS.Signals) => {
    killOnExit();
    unhook();
    if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
  };
  const unhook = () => {
    process.removeListener('exit', killOnExit);
    for (const sig of SIGNALS) process.removeListener(sig, onSignal);
  };
  process.once('exit', killOnExit);
  for (const sig of SIGNALS) process.on(sig, onSignal);
  const stop = async () => {
    unhook();
    if (exited === null) {
      group('SIGTERM');
      const t = setTimeout(() => group('SIGKILL'), 5000);
      await exit;
      clearTimeout(t);
    }
    group('SIGKILL'); // helpers that outlived squid itself
    removeSegments();
  };

  // Ready = squid logged that it accepts connections on our port, and the port answers.
  const deadline = Date.now() + 15_000;
  const listening = new RegExp(`Accepting HTTP Socket connections at \\S+ local=127\\.0\\.0\\.1:${port} `);
  while (!listening.test(read(cacheLog)) || !(await canConnect(port))) {
    if (exited !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`squid did not start (${exited ?? 'timeout'}): ${stderr}${read(cacheLog).split('\n').filter((l) => /FATAL|ERROR|WARNING/.test(l)).join('\n')}`);
    }
    await sleep(50);
  }
  const accessLog = () => read(accessLogFile);
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    dir,
    accessLog,
    // native log format: time elapsed client RESULT/STATUS bytes method URL ...
    results: (url, method = 'GET') => accessLog().split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[5] === method && f[6] === url).map((f) => f[3]),
    close: stop,
  };
}
