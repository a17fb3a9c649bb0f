//! Chains rooted at a trusted issuer (a subject the operator honours) rather than at the owner of
//! `with`: each rule of [`super::super::capability`]'s trust paragraph, with a case that fails if
//! the rule is removed.

use std::collections::{BTreeMap, HashSet};

use ipld_core::ipld::Ipld;

use super::super::capability::{Checked, Context, Denied, EFFECT_FACT, check};
use super::super::revoke::target;
use super::super::to_gateway;
use super::super::token::{Capability, Ucan, UcanFields};
use super::{NOW, World, cx, s};
use crate::did::{KeyAlg, SigningKey};
use crate::task::{EffectClass, Task};
use crate::ucan::validate::{NoRevocations, Revocations};

/// A resource no DID owns: only a trusted issuer can grant it.
const FILES: &str = "https://files.example/shared";

fn on(with: &str, can: &str, nb: &[(&str, Ipld)]) -> Capability {
    Capability {
        with: with.into(),
        can: can.into(),
        nb: nb
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

/// Checks `inv` with `trusted` as the operator's honoured subjects, and `revoked`.
fn check_with(
    w: &World,
    inv: &Ucan,
    trusted: &[String],
    revoked: &dyn Revocations,
) -> Result<Checked, Denied> {
    let trusts = |did: &str| trusted.iter().any(|t| t == did);
    let cx = Context {
        trusted: &trusts,
        ..cx(&w.gateway, revoked)
    };
    check(inv, &w.tokens, &cx)
}

fn trusting(w: &World, inv: &Ucan, trusted: &[String]) -> Result<Checked, Denied> {
    check_with(w, inv, trusted, &NoRevocations)
}

#[test]
fn a_trusted_issuer_roots_a_chain_on_a_resource_it_does_not_own() {
    let mut w = World::new();
    let (operator, user) = (w.owner.clone(), w.user.clone());
    let trusted = [operator.did()];
    let root = w.delegate(
        &operator,
        &user,
        on(FILES, "wasm/run", &[("func", s("add"))]),
        vec![],
    );
    let inv = w.invoke(
        &user,
        on(FILES, "wasm/run", &[("func", s("add"))]),
        vec![root],
    );

    let checked = trusting(&w, &inv, &trusted).unwrap();
    assert_eq!(checked.chain, vec![root]);
    assert_eq!(checked.subject, operator.did(), "the trusted issuer");
    let (payload, auth) = to_gateway(&inv, &checked).unwrap();
    assert_eq!(payload.sub, operator.did());
    assert_eq!(auth.subject, operator.did());
    let task = Task::new(&auth, &payload, EffectClass::Pure).unwrap();
    assert_eq!(task.resource, operator.did());

    // The same chain when the operator is not trusted: the root proves nothing, and the refusal
    // says why a URI resource cannot be proven by ownership.
    let denied = w.check(&inv).unwrap_err();
    assert_eq!(denied.name, "Unauthorized");
    assert!(
        denied.message.contains("is not a DID"),
        "{}",
        denied.message
    );
}

#[test]
fn an_untrusted_issuer_roots_nothing_it_does_not_own() {
    let mut w = World::new();
    let (operator, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let trusted = [operator.did()];
    // The app claims to grant a URI resource, and the operator's DID: it owns neither.
    for with in [FILES.to_owned(), operator.did()] {
        let root = w.delegate(&app, &user, on(&with, "wasm/run", &[]), vec![]);
        let inv = w.invoke(&user, on(&with, "wasm/run", &[]), vec![root]);
        let denied = trusting(&w, &inv, &trusted).unwrap_err();
        assert_eq!(denied.name, "Unauthorized", "{with}");
    }
}

#[test]
fn a_trusted_root_on_another_did_rests_on_the_trusted_issuer_not_on_that_did() {
    let mut w = World::new();
    let (operator, alice, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    // Both are honoured subjects; the operator still cannot act in Alice's name.
    let trusted = [operator.did(), alice.did()];
    let root = w.delegate(&operator, &user, on(&alice.did(), "wasm/run", &[]), vec![]);
    let inv = w.invoke(&user, on(&alice.did(), "wasm/run", &[]), vec![root]);
    assert_eq!(
        trusting(&w, &inv, &trusted).unwrap().subject,
        operator.did()
    );

    // Alice's own delegation is rooted at the owner: her authority.
    let own = w.delegate(&alice, &user, on(&alice.did(), "wasm/run", &[]), vec![]);
    let inv = w.invoke(&user, on(&alice.did(), "wasm/run", &[]), vec![own]);
    assert_eq!(trusting(&w, &inv, &trusted).unwrap().subject, alice.did());

    // Through a trusted middle link the chain ends there (as `canIssue` prunes it in ucanto),
    // so it rests on that link's issuer, and a revoked link above it is not used.
    let above = w.delegate(&alice, &operator, on(&alice.did(), "wasm/run", &[]), vec![]);
    let middle = w.delegate(
        &operator,
        &user,
        on(&alice.did(), "wasm/run", &[]),
        vec![above],
    );
    let inv = w.invoke(&user, on(&alice.did(), "wasm/run", &[]), vec![middle]);
    let checked = check_with(&w, &inv, &trusted, &HashSet::from([above])).unwrap();
    assert_eq!(checked.chain, vec![middle]);
    assert_eq!(checked.subject, operator.did());
    // Trusting Alice only, the same chain must reach her and the revocation counts.
    let alice_only = [alice.did()];
    let denied = check_with(&w, &inv, &alice_only, &HashSet::from([above])).unwrap_err();
    assert!(denied.message.contains("revoked"), "{}", denied.message);
}

#[test]
fn a_self_issued_invocation_needs_iss_equal_with_or_a_trusted_issuer() {
    let mut w = World::new();
    let (operator, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let trusted = [operator.did()];
    let own = w.invoke(&operator, on(FILES, "wasm/run", &[]), vec![]);
    let checked = trusting(&w, &own, &trusted).unwrap();
    assert!(checked.chain.is_empty());
    assert_eq!(checked.subject, operator.did());
    assert_eq!(w.check(&own).unwrap_err().name, "Unauthorized", "untrusted");

    // Anyone else, with no proof: not on the URI, not on the trusted subject's DID.
    for with in [FILES.to_owned(), operator.did()] {
        let inv = w.invoke(&user, on(&with, "wasm/run", &[]), vec![]);
        assert_eq!(
            trusting(&w, &inv, &trusted).unwrap_err().name,
            "Unauthorized"
        );
    }
    // An untrusted owner of its own DID still invokes it, on its own authority.
    let app_own = w.invoke(&app, on(&app.did(), "wasm/run", &[]), vec![]);
    assert_eq!(trusting(&w, &app_own, &trusted).unwrap().subject, app.did());
}

#[test]
fn a_trusted_root_keeps_every_other_check() {
    let mut w = World::new();
    let (operator, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let trusted = [operator.did()];
    let run = |nb: &[(&str, Ipld)]| on(FILES, "wasm/run", nb);

    // Caveats.
    let root = w.delegate(&operator, &user, run(&[("func", s("add"))]), vec![]);
    let inv = w.invoke(&user, run(&[("func", s("spin"))]), vec![root]);
    let denied = trusting(&w, &inv, &trusted).unwrap_err();
    assert!(
        denied.message.contains("Constraint violation"),
        "{}",
        denied.message
    );

    // Revocation.
    let inv = w.invoke(&user, run(&[("func", s("add"))]), vec![root]);
    trusting(&w, &inv, &trusted).unwrap();
    let denied = check_with(&w, &inv, &trusted, &HashSet::from([root])).unwrap_err();
    assert!(denied.message.contains("revoked"), "{}", denied.message);

    // Audience alignment: addressed to the app, cited by the user.
    let to_app = w.delegate(&operator, &app, run(&[]), vec![]);
    let inv = w.invoke(&user, run(&[]), vec![to_app]);
    let denied = trusting(&w, &inv, &trusted).unwrap_err();
    assert!(
        denied.message.contains("Delegation audience"),
        "{}",
        denied.message
    );

    // Time bounds.
    let expired = w.issue(
        &operator,
        UcanFields {
            aud: user.did(),
            att: vec![run(&[])],
            exp: Some(NOW - 3600),
            ..UcanFields::default()
        },
    );
    let inv = w.invoke(&user, run(&[]), vec![expired.cid]);
    let denied = trusting(&w, &inv, &trusted).unwrap_err();
    assert!(denied.message.contains("has expired"), "{}", denied.message);

    // Signature: signed by the app, claiming the operator as issuer.
    let fields = UcanFields {
        aud: user.did(),
        att: vec![run(&[])],
        exp: Some(NOW + 3600),
        ..UcanFields::default()
    };
    let (cid, bytes) = super::forged(&fields, &app, &operator);
    w.tokens.insert(cid, Ucan::decode(cid, &bytes));
    let inv = w.invoke(&user, run(&[]), vec![cid]);
    let denied = trusting(&w, &inv, &trusted).unwrap_err();
    assert!(
        denied.message.contains("valid signature"),
        "{}",
        denied.message
    );

    // The invocation's own audience.
    let inv = w.invoke(&operator, run(&[]), vec![]);
    let denied = check(&inv, &w.tokens, &cx("did:key:z6Mkother", &NoRevocations)).unwrap_err();
    assert_eq!(denied.name, "InvalidAudience");
}

#[test]
fn an_effect_signed_by_the_gateway_is_not_a_trusted_invocation() {
    let mut w = World::new();
    let gateway = SigningKey::generate(KeyAlg::Ed25519);
    w.gateway = gateway.did();
    // "self": the gateway's own DID is honoured.
    let trusted = [gateway.did()];
    let effect = |fct: Vec<Ipld>| UcanFields {
        aud: gateway.did(),
        att: vec![on(FILES, "wasm/run", &[])],
        exp: Some(NOW + 60),
        fct,
        ..UcanFields::default()
    };
    // Signed by the gateway as a plain invocation, it is the gateway's own.
    let plain = w.issue(&gateway, effect(vec![]));
    assert_eq!(
        trusting(&w, &plain, &trusted).unwrap().subject,
        gateway.did()
    );
    // Marked as an effect, it is not: an effect carries the authority it was issued with.
    let mark = Ipld::Map(BTreeMap::from([(
        EFFECT_FACT.to_owned(),
        Ipld::Link(crate::ipld::dag_cbor_cid(b"receipt")),
    )]));
    let marked = w.issue(&gateway, effect(vec![mark]));
    assert_eq!(
        trusting(&w, &marked, &trusted).unwrap_err().name,
        "Unauthorized"
    );
}

#[test]
fn the_resource_must_be_a_concrete_uri() {
    let mut w = World::new();
    let operator = w.owner.clone();
    let trusted = [operator.did()];
    for with in [
        "1files:shared",
        "https:",
        "mailto:a b@example.com",
        "https://files.example/*",
        "ucan:*",
    ] {
        let inv = w.invoke(&operator, on(with, "wasm/run", &[]), vec![]);
        let denied = trusting(&w, &inv, &trusted).unwrap_err();
        assert_eq!(denied.name, "MalformedCapability", "{with}");
    }
    for with in [
        "mailto:alice@example.com",
        "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
    ] {
        let inv = w.invoke(&operator, on(with, "wasm/run", &[]), vec![]);
        trusting(&w, &inv, &trusted).unwrap();
    }
}

#[test]
fn a_trusted_issuer_revokes_only_on_its_own_authority() {
    let mut w = World::new();
    let (operator, app, user) = (w.owner.clone(), w.app.clone(), w.user.clone());
    let trusted = [operator.did()];
    let delegation = w.delegate(&app, &user, on(&app.did(), "wasm/run", &[]), vec![]);
    let revoke = |w: &mut World, with: &str| {
        let inv = w.invoke(
            &operator,
            on(with, "ucan/revoke", &[("ucan", Ipld::Link(delegation))]),
            vec![],
        );
        let checked = trusting(w, &inv, &trusted).unwrap();
        target(&inv, &checked, &w.tokens)
    };
    // Trust lets the operator invoke on the app's DID, not revoke in the app's name.
    assert_eq!(revoke(&mut w, &app.did()).unwrap_err().name, "Unauthorized");
    // On its own authority it revokes only what it issued on the path: nothing here.
    assert_eq!(
        revoke(&mut w, &operator.did()).unwrap_err().name,
        "Unauthorized"
    );
}
