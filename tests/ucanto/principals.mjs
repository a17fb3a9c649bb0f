// Principals for the interop scripts: Ed25519 signers from @ucanto/principal, and a P-256 signer over
// WebCrypto (what browsers use), which @ucanto/principal does not ship, shaped as dag-ucan expects.
import { webcrypto } from 'node:crypto'
import { ed25519 } from '@ucanto/principal'
import * as Signature from '@ipld/dag-ucan/signature'
import { base58btc } from 'multiformats/bases/base58'

const P256_PUB = [0x80, 0x24] // varint(0x1200)

/** An Ed25519 signer from a 32-byte seed. */
export const ed25519From = seed => ed25519.derive(seed)

/** A fresh P-256 signer: did:key of the compressed point; signatures are WebCrypto's r||s. */
export const p256 = async () => {
  const keys = await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, [
    'sign',
    'verify',
  ])
  const raw = new Uint8Array(await webcrypto.subtle.exportKey('raw', keys.publicKey))
  const compressed = new Uint8Array(33)
  compressed[0] = raw[64] & 1 ? 3 : 2
  compressed.set(raw.subarray(1, 33), 1)
  const did = `did:key:${base58btc.encode(new Uint8Array([...P256_PUB, ...compressed]))}`
  return {
    did: () => did,
    toDIDKey: () => did,
    signatureAlgorithm: 'ES256',
    signatureCode: Signature.ES256,
    async sign(payload) {
      const sig = await webcrypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keys.privateKey, payload)
      return Signature.create(Signature.ES256, new Uint8Array(sig))
    },
  }
}
