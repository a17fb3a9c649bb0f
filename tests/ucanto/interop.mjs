// Drives a running ucan-gateway with the unmodified @ucanto/client over HTTP, one case per line of
// JSON output; tests/it/ucanto.rs starts the gateway, runs this and asserts on the lines.
//
// Each case is also sent to a reference @ucanto/server (in process, same client, same chain, its own
// DID as audience) serving `wasm/run` with @ucanto/validator's default rules, plus a `canIssue` hook
// trusting the operator as the gateway's policy does; its answer is reported as `reference`, so the
// test can hold the gateway's refusals to the real server's.
//
// Environment: GATEWAY_URL, GATEWAY_DID, OPERATOR_SEED (hex of the 32-byte Ed25519 seed of the
// subject the gateway serves) and WASM_HEX (a module exporting `add`).
import * as Client from '@ucanto/client'
import * as Server from '@ucanto/server'
import * as CAR from '@ucanto/transport/car'
import * as HTTP from '@ucanto/transport/http'
import { CBOR, delegate } from '@ucanto/core'
import { Verifier, ed25519 } from '@ucanto/principal'
import { ed25519From, p256 } from './principals.mjs'
import { valueDerives } from './derives.mjs'

const env = name => process.env[name] || (console.error(`${name} is required`), process.exit(2))
const gateway = Verifier.parse(env('GATEWAY_DID'))
const operator = await ed25519From(Buffer.from(env('OPERATOR_SEED'), 'hex'))
const module = new Uint8Array(Buffer.from(env('WASM_HEX'), 'hex'))
const connection = Client.connect({
  id: gateway,
  codec: CAR.outbound,
  channel: HTTP.open({ url: new URL(env('GATEWAY_URL')), method: 'POST' }),
})

// The reference: @ucanto/server with a wasm/run handler that adds, its caveats compared as values
// (derives.mjs says why).
const { Schema } = Server
const derives = valueDerives({ CBOR, Schema })
const Run = Server.capability({
  derives,
  can: 'wasm/run',
  with: Schema.uri(),
  nb: Schema.struct({
    module: Schema.bytes().optional(),
    func: Schema.string().optional(),
    args: Schema.array(Schema.integer()).optional(),
  }),
})
const referenceId = await ed25519.generate()
const reference = Server.create({
  id: referenceId,
  codec: CAR.inbound,
  validateAuthorization: () => ({ ok: {} }),
  // The service's own hook for resources it manages: the operator (an honoured subject of the
  // gateway) may issue capabilities on any resource, everyone else only on their own DID.
  canIssue: (capability, issuer) => capability.with === issuer || issuer === operator.did(),
  service: {
    wasm: {
      run: Server.provide(Run, async ({ capability }) => ({
        ok: capability.nb.args.reduce((a, b) => a + b, 0),
      })),
    },
  },
})
const referenceConnection = Client.connect({
  id: referenceId,
  codec: CAR.outbound,
  channel: reference,
})

const app = await ed25519.generate()
const friend = await ed25519.generate()
const stranger = await ed25519.generate()
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
          : v
    )
  )

const outcome = receipt => ({
  ok: receipt.out.ok === undefined ? null : show(receipt.out.ok),
  error: receipt.out.error
    ? { name: receipt.out.error.name, message: receipt.out.error.message }
    : null,
})

/** Sends `invocation` to the gateway (and `referenceInvocation`, if any, to the reference). */
const report = async (name, invocation, referenceInvocation) => {
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
    ...outcome(receipt),
  }
  if (referenceInvocation) {
    const [answer] = await referenceConnection.execute(referenceInvocation)
    line.reference = outcome(answer)
  }
  console.log(JSON.stringify(line))
}

const run = (
  issuer,
  nb,
  { audience = gateway, proofs = [leaf], expiration = now + 300, resource = operator.did() } = {}
) =>
  Client.invoke({
    issuer,
    audience,
    capability: { with: resource, can: 'wasm/run', nb },
    proofs,
    expiration,
  }).delegate()

/** The same invocation for the gateway and for the reference server. */
const both = async (name, issuer, nb, options = {}) =>
  report(
    name,
    await run(issuer, nb, options),
    await run(issuer, nb, { audience: referenceId, ...options })
  )

// Within the caveats.
await both('ok', friend, { module, func: 'add', args: [20, 22] })

// Outside them: `sub` is not `add`.
await both('outside', friend, { module, func: 'sub', args: [20, 22] })

// An expired link in the chain.
const stale = await delegate({
  issuer: app,
  audience: friend,
  capabilities: [{ with: operator.did(), can: 'wasm/run', nb: { func: 'add' } }],
  expiration: now - 600,
  proofs: [root],
})
await both('expired', friend, { module, func: 'add', args: [1, 1] }, { proofs: [stale] })

// Addressed to another service (the same one for both).
const elsewhere = await ed25519.generate()
await both('audience', friend, { module, func: 'add', args: [2, 2] }, { audience: elsewhere })

// An invocation that has itself expired.
await both('late', friend, { module, func: 'add', args: [2, 3] }, { expiration: now - 600 })

// No proof at all from someone who does not own the resource.
await both('unproven', friend, { module, func: 'add', args: [2, 4] }, { proofs: [] })

// The same signed invocation twice: the second is a replay (@ucanto/server has no replay check).
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

// The operator's key grants a resource it manages but does not own as a DID (a URI) to the friend,
// who invokes it: valid because the operator is trusted, and resting on the operator's authority.
// Sent twice, the second is a replay.
const files = 'https://files.example/shared'
const managed = await delegate({
  issuer: operator,
  audience: friend,
  capabilities: [{ with: files, can: 'wasm/run', nb: { func: 'add' } }],
  expiration: now + 3600,
})
const onFiles = { resource: files, proofs: [managed] }
const trusted = await run(friend, { module, func: 'add', args: [40, 2] }, onFiles)
await report('trusted', trusted, await run(friend, { module, func: 'add', args: [40, 2] }, { ...onFiles, audience: referenceId }))
await report('trusted-replay', trusted)

// The app, which the gateway does not trust, grants the same: refused.
const claimed = await delegate({
  issuer: app,
  audience: friend,
  capabilities: [{ with: files, can: 'wasm/run', nb: { func: 'add' } }],
  expiration: now + 3600,
})
await both('untrusted', friend, { module, func: 'add', args: [40, 3] }, { resource: files, proofs: [claimed] })

// Transport-level answers, against the gateway over HTTP and the reference directly.
const transport = [
  ['unsupported', { 'content-type': 'application/json', accept: 'application/vnd.ipld.car' }, '{}'],
  ['unacceptable', { 'content-type': 'application/vnd.ipld.car', accept: 'application/json' }, ''],
  ['malformed', { 'content-type': 'application/vnd.ipld.car', accept: 'application/vnd.ipld.car' }, 'not a car'],
]
for (const [name, headers, text] of transport) {
  const body = new TextEncoder().encode(text)
  const response = await fetch(env('GATEWAY_URL'), { method: 'POST', headers, body })
  const answer = await reference.request({ headers, body })
  console.log(JSON.stringify({ case: `status/${name}`, status: response.status, reference: answer.status }))
}
