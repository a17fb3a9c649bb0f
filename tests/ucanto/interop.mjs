// Drives a running ucan-gateway with the unmodified @ucanto/client over HTTP, one case per line of
// JSON output; tests/it/ucanto.rs starts the gateway, runs this and asserts on the lines.
//
// Environment: GATEWAY_URL, GATEWAY_DID, OPERATOR_SEED (hex of the 32-byte Ed25519 seed of the
// subject the gateway serves) and WASM_HEX (a module exporting `add`).
import * as Client from '@ucanto/client'
import * as CAR from '@ucanto/transport/car'
import * as HTTP from '@ucanto/transport/http'
import { delegate } from '@ucanto/core'
import { Verifier, ed25519 } from '@ucanto/principal'
import { ed25519From, p256 } from './principals.mjs'

const env = name => process.env[name] || (console.error(`${name} is required`), process.exit(2))
const gateway = Verifier.parse(env('GATEWAY_DID'))
const operator = await ed25519From(Buffer.from(env('OPERATOR_SEED'), 'hex'))
const module = new Uint8Array(Buffer.from(env('WASM_HEX'), 'hex'))
const connection = Client.connect({
  id: gateway,
  codec: CAR.outbound,
  channel: HTTP.open({ url: new URL(env('GATEWAY_URL')), method: 'POST' }),
})

const app = await ed25519.generate()
const friend = await ed25519.generate()
const now = Math.floor(Date.now() / 1000)

// operator → app: every wasm/ ability, only for `add`; app → friend: wasm/run, still only `add`.
const root = await delegate({
  issuer: operator,
  audience: app,
  capabilities: [{ with: operator.did(), can: 'wasm/*', nb: { func: 'add' } }],
  expiration: now + 3600,
})
const leaf = await delegate({
  issuer: app,
  audience: friend,
  capabilities: [{ with: operator.did(), can: 'wasm/run', nb: { func: 'add' } }],
  expiration: now + 3600,
  proofs: [root],
})

const show = value =>
  JSON.parse(
    JSON.stringify(value, (_, v) =>
      v instanceof Uint8Array
        ? { bytes: Buffer.from(v).toString('hex') }
        : typeof v === 'bigint'
          ? v.toString()
          : v && v['/'] !== undefined && typeof v.toString === 'function' && v.code !== undefined
            ? v.toString()
            : v
    )
  )

const stranger = await ed25519.generate()

const report = async (name, invocation) => {
  const [receipt] = await connection.execute(invocation)
  const verified = await receipt.verifySignature(gateway)
  // The same check with another key must fail, or `verified` would prove nothing.
  const byOther = await receipt.verifySignature(stranger.verifier)
  const ran = receipt.ran.cid ?? receipt.ran
  const line = {
    case: name,
    invocation: `${invocation.cid}`,
    ran: `${ran}`,
    issuer: receipt.issuer?.did() ?? null,
    verified: verified.ok !== undefined,
    verified_by_other: byOther.ok !== undefined,
    ok: receipt.out.ok === undefined ? null : show(receipt.out.ok),
    error: receipt.out.error
      ? { name: receipt.out.error.name, message: receipt.out.error.message }
      : null,
  }
  console.log(JSON.stringify(line))
}

const run = (issuer, nb, { audience = gateway, proofs = [leaf], expiration = now + 300 } = {}) =>
  Client.invoke({
    issuer,
    audience,
    capability: { with: operator.did(), can: 'wasm/run', nb },
    proofs,
    expiration,
  }).delegate()

// Within the caveats.
await report('ok', await run(friend, { module, func: 'add', args: [20, 22] }))

// Outside them: `sub` is not `add`.
await report('outside', await run(friend, { module, func: 'sub', args: [20, 22] }))

// An expired link in the chain.
const stale = await delegate({
  issuer: app,
  audience: friend,
  capabilities: [{ with: operator.did(), can: 'wasm/run', nb: { func: 'add' } }],
  expiration: now - 600,
  proofs: [root],
})
await report('expired', await run(friend, { module, func: 'add', args: [1, 1] }, { proofs: [stale] }))

// Addressed to another service.
const elsewhere = await ed25519.generate()
await report(
  'audience',
  await run(friend, { module, func: 'add', args: [2, 2] }, { audience: elsewhere })
)

// The same signed invocation twice: the second is a replay.
const once = await run(friend, { module, func: 'add', args: [3, 4] })
await report('first', once)
await report('replay', once)

// The app revokes its delegation to the friend (ucan/revoke, as @storacha/capabilities shapes it);
// the friend's next call through it is refused.
const revocation = await Client.invoke({
  issuer: app,
  audience: gateway,
  capability: { with: app.did(), can: 'ucan/revoke', nb: { ucan: leaf.cid } },
  proofs: [leaf],
  expiration: now + 300,
}).delegate()
await report('revoke', revocation)
await report('revoked', await run(friend, { module, func: 'add', args: [8, 9] }))

// A P-256 (WebCrypto) invoker at the end of the chain.
const browser = await p256()
const toBrowser = await delegate({
  issuer: app,
  audience: browser,
  capabilities: [{ with: operator.did(), can: 'wasm/run', nb: { func: 'add' } }],
  expiration: now + 3600,
  proofs: [root],
})
await report('p256', await run(browser, { module, func: 'add', args: [5, 6] }, { proofs: [toBrowser] }))
