// The limit for raw+gz: create's own gzip decoder, Node's zlib in 1 MiB chunks (as
// lib/disk/decode.ts), output discarded. pigz is no limit for it: zlib here is faster.
import { createReadStream } from 'node:fs'
import { createGunzip } from 'node:zlib'
import { pipeline } from 'node:stream/promises'
import { Writable } from 'node:stream'

const CHUNK = 1 << 20
const discard = new Writable({ write: (_chunk, _enc, done) => done() })
await pipeline(createReadStream(process.argv[2], { highWaterMark: CHUNK }), createGunzip({ chunkSize: CHUNK }), discard)
