// A real tinyproxy (apt package "tinyproxy") for proxy tests: plain "GET http://..."
// and "CONNECT host:port" both go through it and show up in its log file.
import { spawn } from 'node:child_process';
import { promises as fsp, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { canConnect, freePort } from './ports.js';

export interface TestProxy {
  /** e.g. http://127.0.0.1:PORT, usable as http_proxy / https_proxy */
  url: string;
  /** current content of tinyproxy's log file */
  log(): string;
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start tinyproxy with its config and log file in `dir` (created if missing). */
export async function startProxy(dir: string, extra: string[] = []): Promise<TestProxy> {
  await fsp.mkdir(dir, { recursive: true });
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(dir, await freePort(), extra);
    } catch (err) {
      if (attempt >= 3) throw err;
    }
  }
}

async function startOnce(dir: string, port: number, extra: string[]): Promise<TestProxy> {
  const conf = path.join(dir, 'tinyproxy.conf');
  const logFile = path.join(dir, 'tinyproxy.log');
  await fsp.writeFile(logFile, ''); // so log() works even before tinyproxy writes anything
  // tinyproxy 1.11 runs fine as root (it only warns "You SHOULD set a UserName"), so no User/Group:
  // staying the invoking user keeps the log file in a 0700 temp dir writable and readable.
  // No ConnectPort line = CONNECT allowed to every port (our HTTPS test server is on a random one).
  await fsp.writeFile(conf, [
    `Port ${port}`,
    'Listen 127.0.0.1',
    'Timeout 60',
    `LogFile "${logFile}"`,
    'LogLevel Info', // Info includes the "Connect"-level lines recording each request
    'MaxClients 50',
    'Allow 127.0.0.1',
    'DisableViaHeader Yes',
    ...extra, // e.g. 'ConnectPort 443': CONNECT to any other port is answered with 403
  ].join('\n') + '\n');

  const child = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  let exited: string | null = null;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, sig) => { exited = `exit ${code ?? sig}`; resolve(); });
    child.once('error', (err) => { exited = err.message; resolve(); });
  });
  const readLog = () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } };

  // Safety net: never leave a tinyproxy behind if the test process ends without close().
  const killOnExit = () => { if (exited === null) child.kill('SIGKILL'); };
  process.once('exit', killOnExit);
  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (exited === null) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exit;
      clearTimeout(t);
    }
  };

  // Ready = tinyproxy logged its main loop start (so the port is really its own, not a
  // racing process's) and the port accepts connections.
  const deadline = Date.now() + 10_000;
  while (!readLog().includes('Accepting connections') || !(await canConnect(port))) {
    if (exited !== null || Date.now() > deadline) {
      await stop();
      throw new Error(`tinyproxy did not start (${exited ?? 'timeout'}): ${stderr}${readLog()}`);
    }
    await sleep(50);
  }
  return { url: `http://127.0.0.1:${port}`, log: readLog, close: stop };
}
