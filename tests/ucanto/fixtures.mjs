// Writes ucanto request messages made by the real packages, for the Rust decoder's unit tests
// (src/ucanto/tests.rs). Run: `npm run fixtures` (writes into ./fixtures). The files are committed;
// regenerate only when the packages change. Ed25519 keys come from fixed seeds, so those tokens are
// reproducible; the P-256 key is fresh each run (WebCrypto cannot import a raw seed).
import { writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { Message, Delegation, delegate, invoke } from '@ucanto/core'
import * as CAR from '@ucanto/transport/car'
import * as UCAN from '@ipld/dag-ucan'
import { ed25519From, p256 } from './principals.mjs'

const out = process.argv[2] || 'fixtures'
mkdirSync(out, { recursive: true })

const seed = n => new Uint8Array(32).fill(n)
const operator = await ed25519From(seed(1))
const app = await ed25519From(seed(2))
const gateway = await ed25519From(seed(3))
const module = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0])
const EXP = 4102444800 // 2100-01-01

const request = async invocation => {
  const message = await Message.build({ invocations: [invocation] })
  return CAR.request.encode(message).body
}

const expected = { operator: operator.did(), app: app.did(), gateway: gateway.did(), cases: {} }

// 1. Ed25519 chain: operator → app (`wasm/*`, nb.func = add, no expiry), app invokes wasm/run.
const root = await delegate({
  issuer: operator,
  audience: app,
  capabilities: [{ with: operator.did(), can: 'wasm/*', nb: { func: 'add' } }],
  expiration: Infinity,
})
const nb = { func: 'add', args: [20, 22], module }
const inv = await invoke({
  issuer: app,
  audience: gateway,
  capability: { with: operator.did(), can: 'wasm/run', nb },
  proofs: [root],
  expiration: EXP,
  nonce: 'n1',
  facts: [{ 'ipvm/config': { fuel: 1000 } }],
}).delegate()
writeFileSync(join(out, 'ed25519.car'), await request(inv))
expected.cases.ed25519 = { invocation: `${inv.cid}`, proof: `${root.cid}`, exp: EXP, nnc: 'n1' }

// 2. The same with a P-256 invoker (WebCrypto signatures).
const browser = await p256()
const rootP = await delegate({
  issuer: operator,
  audience: browser,
  capabilities: [{ with: operator.did(), can: 'wasm/run' }],
  expiration: EXP,
})
const invP = await invoke({
  issuer: browser,
  audience: gateway,
  capability: { with: operator.did(), can: 'wasm/run', nb },
  proofs: [rootP],
  expiration: EXP,
}).delegate()
writeFileSync(join(out, 'p256.car'), await request(invP))
expected.cases.p256 = { invocation: `${invP.cid}`, proof: `${rootP.cid}`, issuer: browser.did() }

// 3. The proof in the JWT form (a raw block), as dag-ucan keeps a token whose JWT text is not the
// canonical formatting of its fields (here: JSON keys in another order), so the CBOR form would
// change its signed bytes.
const b64 = text => Buffer.from(text).toString('base64url')
const signingInput = `${b64(JSON.stringify({ ucv: '0.9.1', typ: 'JWT', alg: 'EdDSA' }))}.${b64(
  JSON.stringify({
    iss: operator.did(),
    aud: app.did(),
    exp: EXP,
    att: [{ with: operator.did(), can: 'wasm/run', nb: { func: 'add' } }],
    prf: [],
  })
)}`
const jwtSig = await operator.sign(new TextEncoder().encode(signingInput))
const jwt = UCAN.parse(`${signingInput}.${Buffer.from(jwtSig.raw).toString('base64url')}`)
const jwtBlock = await UCAN.write(jwt)
if (jwtBlock.cid.code !== 0x55) throw new Error('expected a raw JWT block')
const rootJ = Delegation.create({ root: jwtBlock })
const invJ = await invoke({
  issuer: app,
  audience: gateway,
  capability: { with: operator.did(), can: 'wasm/run', nb },
  proofs: [rootJ],
  expiration: EXP,
}).delegate()
writeFileSync(join(out, 'jwt.car'), await request(invJ))
expected.cases.jwt = { invocation: `${invJ.cid}`, proof: `${jwtBlock.cid}` }

// 4. Caveats of every value kind, so the DAG-JSON signing input is rebuilt right for each.
const caveats = {
  floats: [1.5, 0.1, 1e21, 1e-7, -0.5, 5e-324, 1.7976931348623157e308],
  ints: [0, -1, 9007199254740991, -9007199254740991],
  text: 'héllo ✓ "q" / \\ \n\t</script> \u2028',
  bytes: new Uint8Array([0, 1, 254, 255]),
  link: root.cid,
  nothing: null,
  yes: true,
  nested: { b: [{ c: [] }], a: {} },
}
const invC = await invoke({
  issuer: operator,
  audience: gateway,
  capability: { with: operator.did(), can: 'wasm/run', nb: caveats },
  expiration: EXP,
}).delegate()
writeFileSync(join(out, 'caveats.car'), await request(invC))
expected.cases.caveats = { invocation: `${invC.cid}` }

writeFileSync(join(out, 'expected.json'), JSON.stringify(expected, null, 2) + '\n')
console.log(JSON.stringify(expected))
