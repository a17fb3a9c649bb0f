//! Proof-chain validation, case by case: a valid chain of each shape, then every error name, each
//! produced by exactly one fault in an otherwise valid chain.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use cid::Cid;
use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::{
    self, Authorized, NoCache, NoRevocations, Options, SignatureCache,
};
use ucan_gateway::ucan::{Command, Delegation, ErrorKind, Invocation, Policy, ValidationError};

const NOW: i64 = 1_750_000_000;

fn cmd(s: &str) -> Command {
    Command::parse(s).unwrap()
}

fn args(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// Alice owns the subject; Bob, Carol and Dan receive authority in turn.
struct Cast {
    alice: SigningKey,
    bob: SigningKey,
    carol: SigningKey,
    dan: SigningKey,
}

impl Cast {
    fn new(alg: KeyAlg) -> Self {
        Cast {
            alice: SigningKey::generate(alg),
            bob: SigningKey::generate(alg),
            carol: SigningKey::generate(alg),
            dan: SigningKey::generate(alg),
        }
    }
}

fn delegate(to: &SigningKey, sub: Option<&SigningKey>, command: &str) -> DelegationBuilder {
    DelegationBuilder::new(to.did(), sub.map(|s| s.did()), cmd(command)).expires(Some(NOW + 3600))
}

fn invoke(sub: &SigningKey, command: &str, chain: &[&Delegation]) -> InvocationBuilder {
    InvocationBuilder::new(sub.did(), cmd(command), args(&[("n", Ipld::Integer(7))]))
        .proofs(chain.iter().map(|d| d.cid()).collect())
        .expires(Some(NOW + 300))
}

fn proofs(chain: &[&Delegation]) -> HashMap<Cid, Delegation> {
    chain.iter().map(|d| (d.cid(), (*d).clone())).collect()
}

fn check(inv: &Invocation, chain: &[&Delegation]) -> Result<Authorized, ValidationError> {
    validate::validate(
        inv,
        &proofs(chain),
        Options::at(NOW),
        &NoRevocations,
        &NoCache,
    )
}

fn expect_err(result: Result<Authorized, ValidationError>, kind: ErrorKind) -> ValidationError {
    match result {
        Ok(ok) => panic!("expected {kind}, got a valid result: {ok:?}"),
        Err(e) => {
            assert_eq!(e.kind, kind, "wrong error: {e}");
            e
        }
    }
}

/// Alice → Bob → Carol, Carol invokes on Alice.
fn two_link(c: &Cast) -> (Delegation, Delegation) {
    let root = delegate(&c.bob, Some(&c.alice), "/wasm")
        .sign(&c.alice)
        .unwrap();
    let mid = delegate(&c.carol, Some(&c.alice), "/wasm/run")
        .sign(&c.bob)
        .unwrap();
    (root, mid)
}

#[test]
fn valid_chains_for_every_key_type() {
    for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
        let c = Cast::new(alg);
        let (root, mid) = two_link(&c);
        let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
            .sign(&c.carol)
            .unwrap();
        let ok = check(&inv, &[&root, &mid]).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(ok.invoker, c.carol.did());
        assert_eq!(ok.subject, c.alice.did());
        assert_eq!(ok.audience, c.alice.did(), "no aud: the subject executes");
        assert_eq!(ok.command, cmd("/wasm/run"));
        assert_eq!(ok.chain, vec![root.cid(), mid.cid()]);
        assert_eq!(ok.expires, Some(NOW + 300), "earliest expiry in the chain");
        assert_eq!(ok.invocation, inv.cid());
    }
}

#[test]
fn self_issued_invocation_needs_no_proofs() {
    let c = Cast::new(KeyAlg::Ed25519);
    let inv = invoke(&c.alice, "/anything", &[]).sign(&c.alice).unwrap();
    assert!(check(&inv, &[]).unwrap().chain.is_empty());
    // …but only when the invoker is the subject: otherwise nothing establishes the subject's
    // authority (`InvalidClaim`, as the spec's fixtures name it).
    let inv = invoke(&c.alice, "/anything", &[]).sign(&c.bob).unwrap();
    expect_err(check(&inv, &[]), ErrorKind::InvalidClaim);
}

#[test]
fn leaf_first_proof_lists_are_accepted() {
    let c = Cast::new(KeyAlg::Ed25519);
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&mid, &root])
        .sign(&c.carol)
        .unwrap();
    assert_eq!(
        check(&inv, &[&root, &mid]).unwrap().chain,
        vec![root.cid(), mid.cid()]
    );
}

#[test]
fn powerline_below_the_root_inherits_the_subject() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/")
        .sign(&c.alice)
        .unwrap();
    let power = delegate(&c.carol, None, "/").sign(&c.bob).unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &power])
        .sign(&c.carol)
        .unwrap();
    check(&inv, &[&root, &power]).unwrap();
}

#[test]
fn invalid_signature_on_the_invocation_for_every_key_type() {
    for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
        let c = Cast::new(alg);
        let (root, mid) = two_link(&c);
        let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
            .sign(&c.carol)
            .unwrap();
        let mut bytes = inv.bytes().to_vec();
        bytes[3 + 10] ^= 0x01; // inside the 64-byte signature (after 0x82 0x58 0x40)
        let tampered = Invocation::decode(&bytes).unwrap();
        let e = expect_err(
            check(&tampered, &[&root, &mid]),
            ErrorKind::InvalidSignature,
        );
        assert_eq!(e.proof(), None);
    }
}

#[test]
fn invalid_signature_on_a_delegation_names_the_proof() {
    for alg in [KeyAlg::Ed25519, KeyAlg::P256, KeyAlg::Secp256k1] {
        let c = Cast::new(alg);
        let (root, mid) = two_link(&c);
        let mut bytes = mid.bytes().to_vec();
        bytes[3 + 20] ^= 0x80;
        let forged = Delegation::decode(&bytes).unwrap();
        let inv = invoke(&c.alice, "/wasm/run", &[&root, &forged])
            .sign(&c.carol)
            .unwrap();
        let e = expect_err(check(&inv, &[&root, &forged]), ErrorKind::InvalidSignature);
        assert_eq!(e.proof(), Some(forged.cid()));
    }
}

#[test]
fn expired_invocation_and_expired_delegation() {
    let c = Cast::new(KeyAlg::Ed25519);
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
        .expires(Some(NOW - 3600))
        .sign(&c.carol)
        .unwrap();
    expect_err(check(&inv, &[&root, &mid]), ErrorKind::Expired);

    let old = delegate(&c.carol, Some(&c.alice), "/wasm")
        .expires(Some(NOW - 3600))
        .sign(&c.bob)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &old])
        .sign(&c.carol)
        .unwrap();
    let e = expect_err(check(&inv, &[&root, &old]), ErrorKind::Expired);
    assert_eq!(e.proof(), Some(old.cid()));
}

#[test]
fn leeway_allows_small_skew_and_strict_mode_does_not() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/wasm")
        .expires(Some(NOW - 30))
        .sign(&c.alice)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root])
        .sign(&c.bob)
        .unwrap();
    check(&inv, &[&root]).expect("30 s past expiry is within the default 60 s leeway");
    let strict = validate::validate(
        &inv,
        &proofs(&[&root]),
        Options::strict(NOW),
        &NoRevocations,
        &NoCache,
    );
    expect_err(strict, ErrorKind::Expired);
}

#[test]
fn not_yet_valid_delegation_is_too_early() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/wasm")
        .not_before(Some(NOW + 1000))
        .sign(&c.alice)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root])
        .expires(Some(NOW + 2000))
        .sign(&c.bob)
        .unwrap();
    let e = expect_err(check(&inv, &[&root]), ErrorKind::TooEarly);
    assert_eq!(e.proof(), Some(root.cid()));
    // Once the time comes, the same chain is valid, and the latest nbf is reported.
    let later = validate::validate(
        &inv,
        &proofs(&[&root]),
        Options::at(NOW + 1000),
        &NoRevocations,
        &NoCache,
    );
    assert_eq!(later.unwrap().not_before, Some(NOW + 1000));
}

#[test]
fn principal_misalignment_is_invalid_audience() {
    let c = Cast::new(KeyAlg::Ed25519);
    // The chain's last audience is Carol, but Dan invokes.
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
        .sign(&c.dan)
        .unwrap();
    expect_err(check(&inv, &[&root, &mid]), ErrorKind::InvalidAudience);
    // A gap in the middle: Alice → Bob, then Carol → Dan.
    let gap = delegate(&c.dan, Some(&c.alice), "/wasm")
        .sign(&c.carol)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &gap])
        .sign(&c.dan)
        .unwrap();
    let e = expect_err(check(&inv, &[&root, &gap]), ErrorKind::InvalidAudience);
    assert_eq!(e.proof(), Some(root.cid()));
}

#[test]
fn a_root_that_does_not_establish_authority_is_invalid_claim() {
    let c = Cast::new(KeyAlg::Ed25519);
    // A powerline may not be the root.
    let power_root = delegate(&c.bob, None, "/").sign(&c.alice).unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&power_root])
        .sign(&c.bob)
        .unwrap();
    let e = expect_err(check(&inv, &[&power_root]), ErrorKind::InvalidClaim);
    assert_eq!(e.proof(), Some(power_root.cid()));
    // The root must be issued by its subject: Bob cannot hand out Alice's authority on his own.
    let usurped = delegate(&c.carol, Some(&c.alice), "/")
        .sign(&c.bob)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&usurped])
        .sign(&c.carol)
        .unwrap();
    expect_err(check(&inv, &[&usurped]), ErrorKind::InvalidClaim);
}

#[test]
fn subject_faults_are_invalid_subject() {
    let c = Cast::new(KeyAlg::Ed25519);
    // The invocation's subject must be the chain's.
    let root = delegate(&c.bob, Some(&c.alice), "/")
        .sign(&c.alice)
        .unwrap();
    let inv = invoke(&c.dan, "/wasm/run", &[&root]).sign(&c.bob).unwrap();
    expect_err(check(&inv, &[&root]), ErrorKind::InvalidSubject);
    // A later delegation may not switch subjects.
    let switch = delegate(&c.carol, Some(&c.dan), "/").sign(&c.bob).unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &switch])
        .sign(&c.carol)
        .unwrap();
    expect_err(check(&inv, &[&root, &switch]), ErrorKind::InvalidSubject);
}

#[test]
fn command_escalation_is_invalid_claim() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/crypto")
        .sign(&c.alice)
        .unwrap();
    let inv = invoke(&c.alice, "/cryptocurrency", &[&root])
        .sign(&c.bob)
        .unwrap();
    expect_err(check(&inv, &[&root]), ErrorKind::InvalidClaim);
    let inv = invoke(&c.alice, "/crypto/sign", &[&root])
        .sign(&c.bob)
        .unwrap();
    check(&inv, &[&root]).unwrap();
    // Narrowing then widening again does not help: every link must cover the invoked command.
    let narrow = delegate(&c.bob, Some(&c.alice), "/crypto/sign")
        .sign(&c.alice)
        .unwrap();
    let wide = delegate(&c.carol, Some(&c.alice), "/crypto")
        .sign(&c.bob)
        .unwrap();
    let inv = invoke(&c.alice, "/crypto/verify", &[&narrow, &wide])
        .sign(&c.carol)
        .unwrap();
    let e = expect_err(check(&inv, &[&narrow, &wide]), ErrorKind::InvalidClaim);
    assert_eq!(e.proof(), Some(narrow.cid()));
}

#[test]
fn missing_proof_is_unavailable_proof() {
    let c = Cast::new(KeyAlg::Ed25519);
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
        .sign(&c.carol)
        .unwrap();
    let e = expect_err(check(&inv, &[&root]), ErrorKind::UnavailableProof);
    assert_eq!(e.proof(), Some(mid.cid()));
}

#[test]
fn policy_violation_is_match_error_anywhere_in_the_chain() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/wasm")
        .policy(Policy::from_json(r#"[["<=", ".n", 10]]"#).unwrap())
        .sign(&c.alice)
        .unwrap();
    let mid = delegate(&c.carol, Some(&c.alice), "/wasm")
        .policy(Policy::from_json(r#"[[">=", ".n", 5]]"#).unwrap())
        .sign(&c.bob)
        .unwrap();
    let run = |n: i128| {
        let inv = InvocationBuilder::new(
            c.alice.did(),
            cmd("/wasm/run"),
            args(&[("n", Ipld::Integer(n))]),
        )
        .proofs(vec![root.cid(), mid.cid()])
        .expires(Some(NOW + 60))
        .sign(&c.carol)
        .unwrap();
        check(&inv, &[&root, &mid])
    };
    run(7).expect("7 satisfies both policies");
    assert_eq!(
        expect_err(run(11), ErrorKind::MatchError).proof(),
        Some(root.cid())
    );
    assert_eq!(
        expect_err(run(4), ErrorKind::MatchError).proof(),
        Some(mid.cid())
    );
}

#[test]
fn revoked_delegation_is_refused() {
    let c = Cast::new(KeyAlg::Ed25519);
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
        .sign(&c.carol)
        .unwrap();
    let revoked: HashSet<Cid> = [mid.cid()].into();
    let e = expect_err(
        validate::validate(
            &inv,
            &proofs(&[&root, &mid]),
            Options::at(NOW),
            &revoked,
            &NoCache,
        ),
        ErrorKind::Revoked,
    );
    assert_eq!(e.proof(), Some(mid.cid()));
}

#[test]
fn overlong_chains_are_refused_before_any_work() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/")
        .sign(&c.alice)
        .unwrap();
    let inv = InvocationBuilder::new(c.alice.did(), cmd("/x"), BTreeMap::new())
        .proofs(vec![root.cid(); validate::MAX_CHAIN + 1])
        .sign(&c.bob)
        .unwrap();
    // Named for the limit, which the message states: not a malformed token.
    let e = expect_err(check(&inv, &[&root]), ErrorKind::ChainTooLong);
    assert_eq!(e.message, "33 proofs; at most 32");
    // The longest chain allowed is not refused for its length.
    let inv = InvocationBuilder::new(c.alice.did(), cmd("/x"), BTreeMap::new())
        .proofs(vec![root.cid(); validate::MAX_CHAIN])
        .sign(&c.bob)
        .unwrap();
    if let Err(e) = check(&inv, &[&root]) {
        assert_ne!(e.kind, ErrorKind::ChainTooLong, "{e}");
    }
}

#[test]
fn garbage_is_a_malformed_token() {
    for bytes in [
        &b""[..],
        b"\x82\x00",
        b"not cbor at all",
        &[0x82, 0x40, 0xa0],
    ] {
        assert_eq!(
            Invocation::decode(bytes).unwrap_err().kind,
            ErrorKind::MalformedToken
        );
        assert_eq!(
            Delegation::decode(bytes).unwrap_err().kind,
            ErrorKind::MalformedToken
        );
    }
    // A delegation is not an invocation, and the other way round.
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/")
        .sign(&c.alice)
        .unwrap();
    assert_eq!(
        Invocation::decode(root.bytes()).unwrap_err().kind,
        ErrorKind::MalformedToken
    );
}

#[test]
fn decoded_tokens_equal_the_signed_ones() {
    let c = Cast::new(KeyAlg::P256);
    let (root, _) = two_link(&c);
    assert_eq!(Delegation::decode(root.bytes()).unwrap(), root);
    let inv = invoke(&c.alice, "/wasm/run", &[&root])
        .sign(&c.bob)
        .unwrap();
    let back = Invocation::decode(inv.bytes()).unwrap();
    assert_eq!(back, inv);
    assert_eq!(back.payload.task_id(), inv.payload.task_id());
}

#[test]
fn task_id_ignores_meta_invoker_and_proofs_but_not_nonce() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/")
        .sign(&c.alice)
        .unwrap();
    let a = InvocationBuilder::new(
        c.alice.did(),
        cmd("/wasm/run"),
        args(&[("n", Ipld::Integer(1))]),
    )
    .nonce(vec![])
    .sign(&c.alice)
    .unwrap();
    let b = InvocationBuilder::new(
        c.alice.did(),
        cmd("/wasm/run"),
        args(&[("n", Ipld::Integer(1))]),
    )
    .nonce(vec![])
    .proofs(vec![root.cid()])
    .meta(args(&[("fuel", Ipld::Integer(10))]))
    .sign(&c.bob)
    .unwrap();
    assert_ne!(a.cid(), b.cid());
    assert_eq!(a.payload.task_id(), b.payload.task_id());
    let d = InvocationBuilder::new(
        c.alice.did(),
        cmd("/wasm/run"),
        args(&[("n", Ipld::Integer(1))]),
    )
    .nonce(vec![1])
    .sign(&c.alice)
    .unwrap();
    assert_ne!(a.payload.task_id(), d.payload.task_id());
}

/// Counts what the validator asks of its signature cache.
#[derive(Default)]
struct CountingCache {
    verified: Mutex<HashSet<Cid>>,
}

impl SignatureCache for CountingCache {
    fn is_verified(&self, token: &Cid) -> bool {
        self.verified.lock().unwrap().contains(token)
    }
    fn mark_verified(&self, token: &Cid) {
        self.verified.lock().unwrap().insert(*token);
    }
}

#[test]
fn signature_cache_records_verified_delegations_never_invocations_nor_bad_tokens() {
    let c = Cast::new(KeyAlg::Ed25519);
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
        .sign(&c.carol)
        .unwrap();
    let cache = CountingCache::default();
    validate::validate(
        &inv,
        &proofs(&[&root, &mid]),
        Options::at(NOW),
        &NoRevocations,
        &cache,
    )
    .unwrap();
    // Delegations are reused across requests; an invocation is used once, so it is not kept.
    let expected: HashSet<Cid> = [root.cid(), mid.cid()].into();
    assert_eq!(*cache.verified.lock().unwrap(), expected);

    let mut bytes = inv.bytes().to_vec();
    bytes[5] ^= 1;
    let tampered = Invocation::decode(&bytes).unwrap();
    let cache = CountingCache::default();
    let result = validate::validate(
        &tampered,
        &proofs(&[&root, &mid]),
        Options::at(NOW),
        &NoRevocations,
        &cache,
    );
    expect_err(result, ErrorKind::InvalidSignature);
    assert!(!cache.verified.lock().unwrap().contains(&tampered.cid()));

    // An invocation's signature is checked every time, even where a cache claims to know it.
    cache.mark_verified(&tampered.cid());
    let result = validate::validate(
        &tampered,
        &proofs(&[&root, &mid]),
        Options::at(NOW),
        &NoRevocations,
        &cache,
    );
    expect_err(result, ErrorKind::InvalidSignature);
}

#[test]
fn a_delegation_may_not_widen_the_command_it_was_given() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/wasm/run")
        .sign(&c.alice)
        .unwrap();
    // Bob passes on more than he holds; the invoked command is within both, which must not help.
    for wider in ["/wasm", "/"] {
        let mid = delegate(&c.carol, Some(&c.alice), wider)
            .sign(&c.bob)
            .unwrap();
        let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
            .sign(&c.carol)
            .unwrap();
        let e = expect_err(check(&inv, &[&root, &mid]), ErrorKind::InvalidClaim);
        assert_eq!(e.proof(), Some(mid.cid()), "{wider}");
    }
    // Restating is fine.
    let same = delegate(&c.carol, Some(&c.alice), "/wasm/run")
        .sign(&c.bob)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &same])
        .sign(&c.carol)
        .unwrap();
    check(&inv, &[&root, &same]).unwrap();
}

#[test]
fn an_invocation_not_valid_yet_is_too_early() {
    let c = Cast::new(KeyAlg::Ed25519);
    let (root, mid) = two_link(&c);
    let inv = invoke(&c.alice, "/wasm/run", &[&root, &mid])
        .not_before(Some(NOW + 1000))
        .expires(Some(NOW + 2000))
        .sign(&c.carol)
        .unwrap();
    let e = expect_err(check(&inv, &[&root, &mid]), ErrorKind::TooEarly);
    assert_eq!(e.proof(), None, "the invocation's own field, not a proof's");
    let later = validate::validate(
        &inv,
        &proofs(&[&root, &mid]),
        Options::at(NOW + 1000),
        &NoRevocations,
        &NoCache,
    );
    assert_eq!(later.unwrap().not_before, Some(NOW + 1000));
}

#[test]
fn policies_can_be_checked_apart_from_the_chain() {
    let c = Cast::new(KeyAlg::Ed25519);
    let root = delegate(&c.bob, Some(&c.alice), "/wasm")
        .policy(ucan_gateway::ucan::Policy::from_json(r#"[["==", ".n", 7]]"#).unwrap())
        .sign(&c.alice)
        .unwrap();
    let inv = invoke(&c.alice, "/wasm/run", &[&root])
        .sign(&c.bob)
        .unwrap();
    let all = proofs(&[&root]);
    let chain = validate::check_chain(&inv, &all, Options::at(NOW), &NoRevocations, &NoCache)
        .expect("everything but the policies holds");
    chain.check_policies(&inv.payload.args).unwrap();
    let other = args(&[("n", Ipld::Integer(8))]);
    let e = chain.check_policies(&other).unwrap_err();
    assert_eq!(
        (e.kind, e.proof()),
        (ErrorKind::MatchError, Some(root.cid()))
    );
    assert_eq!(chain.authorized(&other).args, other);
}
