// Reads dag-ucan CBOR blocks (hex, one per line on stdin) and prints, for each, what @ipld/dag-ucan
// makes of it: whether it decodes, whether the issuer's signature verifies (Ed25519 issuers), and
// the capabilities. tests/it/ucanto.rs uses it to hold the gateway's encoder to the real library.
import { createInterface } from 'node:readline'
import * as UCAN from '@ipld/dag-ucan'
import { Verifier } from '@ucanto/principal'

for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue
  try {
    const ucan = UCAN.decode(Buffer.from(line.trim(), 'hex'))
    const verifier = Verifier.parse(ucan.issuer.did())
    const verified = await UCAN.verifySignature(ucan, verifier)
    console.log(
      JSON.stringify({
        decoded: true,
        verified,
        iss: ucan.issuer.did(),
        aud: ucan.audience.did(),
        can: ucan.capabilities.map(c => c.can),
        exp: ucan.expiration === Infinity ? null : ucan.expiration,
      })
    )
  } catch (error) {
    console.log(JSON.stringify({ decoded: false, error: String(error) }))
  }
}
