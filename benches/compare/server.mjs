// A real @ucanto/server doing what the gateway does for `/wasm/run`: decode the CAR message, check
// the delegation chain with @ucanto/validator, run the module's function through WebAssembly and
// answer with a receipt signed by the same key as the gateway. No durable store and no replay
// protection: the gateway does both on top of this work.
//
// Usage: node server.mjs KEY_FILE PORT. KEY_FILE is a gateway key file (base64 of the multicodec
// varint 0x1300 and the 32-byte Ed25519 seed). Prints `ready <did>` once listening.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:http'
import * as Server from '@ucanto/server'
import * as CAR from '@ucanto/transport/car'
import { ed25519 } from '@ucanto/principal'
import { CBOR } from '@ucanto/core'
import { valueDerives } from '../../tests/ucanto/derives.mjs'

const [keyFile, port] = process.argv.slice(2)
if (!keyFile || !port) {
  console.error('usage: node server.mjs KEY_FILE PORT')
  process.exit(2)
}
const raw = Buffer.from(readFileSync(keyFile, 'utf8').trim(), 'base64')
if (raw.length !== 34 || raw[0] !== 0x80 || raw[1] !== 0x26) {
  console.error(`${keyFile}: not an Ed25519 gateway key`)
  process.exit(2)
}
const id = await ed25519.derive(raw.subarray(2))

// Caveats compared as values, as the gateway's interop tests do (tests/ucanto/derives.mjs says why).
const { Schema } = Server
const derives = valueDerives({ CBOR, Schema })
const Run = Server.capability({
  derives,
  can: 'wasm/run',
  with: Schema.did(),
  // Optional, so a delegation may leave them open (the load generator's do); the handler needs all.
  nb: Schema.struct({
    module: Schema.bytes().optional(),
    func: Schema.string().optional(),
    args: Schema.array(Schema.integer()).optional(),
  }),
})

// Compiled once per module, as the gateway keeps its compiled modules; bounded like its cache.
const compiled = new Map()
const instantiate = bytes => {
  const key = Buffer.from(bytes).toString('base64')
  let module = compiled.get(key)
  if (!module) {
    module = new WebAssembly.Module(bytes)
    if (compiled.size < 64) compiled.set(key, module)
  }
  return new WebAssembly.Instance(module, {})
}

const server = Server.create({
  id,
  codec: CAR.inbound,
  validateAuthorization: () => ({ ok: {} }),
  service: {
    wasm: {
      run: Server.provide(Run, async ({ capability }) => {
        const { module, func, args } = capability.nb
        if (!module || !func || !args) return Server.error('module, func and args are required')
        const exported = instantiate(module).exports[func]
        if (typeof exported !== 'function') return Server.error(`no function ${func}`)
        return { ok: exported(...args) }
      }),
    },
  },
})

const http = createServer(async (req, res) => {
  const chunks = []
  for await (const chunk of req) chunks.push(chunk)
  const response = await server.request({
    headers: req.headers,
    body: new Uint8Array(Buffer.concat(chunks)),
  })
  res.writeHead(response.status ?? 200, response.headers)
  res.end(response.body)
})
// The load generator keeps its connections for the whole run.
http.keepAliveTimeout = 75_000
http.listen(Number(port), '127.0.0.1', () => console.log(`ready ${id.did()}`))
