// Throw-away CA + server certificate for HTTPS tests, made with the openssl CLI
// (the same tool an admin would use, and no npm dependency).
import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCerts {
  /** CA certificate (PEM): pass as `ca` / --cacert */
  caFile: string;
  /** directory holding the CA as <subject-hash>.0: for --capath / SSL_CERT_DIR */
  caDir: string;
  /** server certificate (PEM) for 127.0.0.1, ::1 and localhost, signed by the CA */
  certFile: string;
  /** server private key (PEM, unencrypted) */
  keyFile: string;
}

async function openssl(cwd: string, ...args: string[]): Promise<string> {
  try {
    return (await run('openssl', args, { cwd })).stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`openssl ${args[0]} failed: ${e.stderr || e.message}`);
  }
}

/** Create CA and server certificate files in `dir` (created if missing). */
export async function makeCerts(dir: string): Promise<TestCerts> {
  const f = (n: string) => path.join(dir, n);
  await fsp.mkdir(dir, { recursive: true });
  // EC keys: generated instantly, supported by curl, wget and node alike.
  const newkey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await openssl(dir, 'req', '-x509', ...newkey, '-keyout', f('ca.key'), '-out', f('ca.pem'),
    '-days', '3650', '-subj', '/CN=simpleimage test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  await openssl(dir, 'req', ...newkey, '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=127.0.0.1');
  // Clients match IP addresses only against IP SANs, never the CN.
  await fsp.writeFile(f('server.ext'), [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature',
    'extendedKeyUsage=serverAuth',
    'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost',
  ].join('\n') + '\n');
  await openssl(dir, 'x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-days', '3650', '-extfile', f('server.ext'), '-out', f('server.pem'));

  // Hashed CA directory, like `openssl rehash` would produce.
  const caDir = f('cadir');
  await fsp.mkdir(caDir, { recursive: true });
  const hash = (await openssl(dir, 'x509', '-hash', '-noout', '-in', f('ca.pem'))).trim();
  await fsp.copyFile(f('ca.pem'), path.join(caDir, `${hash}.0`));

  return { caFile: f('ca.pem'), caDir, certFile: f('server.pem'), keyFile: f('server.key') };
}
