// ucanto's default `derives` rule with caveats compared as values. The default compares them with
// JS `!=`, which refuses any list or bytes caveat even when equal, so ucanto capabilities with such
// fields define their own. Shared by the interop reference server and benches/compare/server.mjs;
// it imports nothing, so either package's own @ucanto copies are passed in.

/** The rule, given @ucanto/core's `CBOR` and @ucanto/validator's `Schema`. */
export const valueDerives = ({ CBOR, Schema }) => {
  const same = (a, b) =>
    a !== undefined && b !== undefined && Buffer.compare(CBOR.encode(a), CBOR.encode(b)) === 0
  return (claimed, delegated) => {
    const contained = delegated.with.endsWith('*')
      ? claimed.with.startsWith(delegated.with.slice(0, -1))
      : claimed.with === delegated.with
    if (!contained) {
      return Schema.error(`Resource ${claimed.with} is not contained by ${delegated.with}`)
    }
    for (const [name, value] of Object.entries(delegated.nb || {})) {
      if (value !== undefined && !same((claimed.nb || {})[name], value)) {
        return Schema.error(`Constraint violation: ${name}`)
      }
    }
    return { ok: true }
  }
}
