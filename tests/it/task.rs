//! Authorised invocations become tasks: the task id follows the invocation spec, the work id ignores
//! who asks and how the data travels, and the requested execution settings are read strictly.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::ipld::{RAW, cid_for, dag_cbor_cid, to_dag_cbor};
use ucan_gateway::task::{self, CONFIG_KEY, EffectClass, ExecConfig, Task, TaskError};
use ucan_gateway::ucan::delegation::DelegationBuilder;
use ucan_gateway::ucan::invocation::{Invocation, InvocationBuilder};
use ucan_gateway::ucan::validate::{self, Authorized, NoCache, NoRevocations, Options};
use ucan_gateway::ucan::{Command, Delegation};

const NOW: i64 = 1_750_000_000;

fn cmd(s: &str) -> Command {
    Command::parse(s).unwrap()
}

fn map(pairs: &[(&str, Ipld)]) -> BTreeMap<String, Ipld> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn module_args(module: Ipld) -> BTreeMap<String, Ipld> {
    map(&[
        ("module", module),
        ("func", Ipld::String("add".into())),
        ("args", Ipld::List(vec![Ipld::Integer(1), Ipld::Integer(2)])),
    ])
}

/// Alice owns the subject and delegates `/wasm` to Bob, so both can invoke on Alice's behalf.
struct World {
    alice: SigningKey,
    bob: SigningKey,
    to_bob: Delegation,
}

impl World {
    fn new() -> Self {
        let alice = SigningKey::generate(KeyAlg::Ed25519);
        let bob = SigningKey::generate(KeyAlg::Ed25519);
        let to_bob = DelegationBuilder::new(bob.did(), Some(alice.did()), cmd("/wasm"))
            .expires(Some(NOW + 3600))
            .sign(&alice)
            .unwrap();
        World { alice, bob, to_bob }
    }

    fn invocation(
        &self,
        by: &SigningKey,
        nonce: &[u8],
        meta: Option<BTreeMap<String, Ipld>>,
    ) -> Invocation {
        self.invocation_with(
            by,
            nonce,
            meta,
            module_args(Ipld::Bytes(b"\0asm module".to_vec())),
        )
    }

    fn invocation_with(
        &self,
        by: &SigningKey,
        nonce: &[u8],
        meta: Option<BTreeMap<String, Ipld>>,
        args: BTreeMap<String, Ipld>,
    ) -> Invocation {
        let prf = if by.did() == self.alice.did() {
            vec![]
        } else {
            vec![self.to_bob.cid()]
        };
        let mut builder = InvocationBuilder::new(self.alice.did(), cmd("/wasm/run"), args)
            .proofs(prf)
            .nonce(nonce.to_vec())
            .expires(Some(NOW + 300));
        if let Some(meta) = meta {
            builder = builder.meta(meta);
        }
        builder.sign(by).unwrap()
    }

    fn authorize(&self, inv: &Invocation) -> Authorized {
        let proofs: HashMap<_, _> = [(self.to_bob.cid(), self.to_bob.clone())].into();
        validate::validate(inv, &proofs, Options::at(NOW), &NoRevocations, &NoCache).unwrap()
    }

    fn task(&self, inv: &Invocation) -> Result<Task, TaskError> {
        Task::new(&self.authorize(inv), &inv.payload, EffectClass::Pure)
    }
}

fn config_meta(config: Ipld) -> Option<BTreeMap<String, Ipld>> {
    Some(map(&[(CONFIG_KEY, config)]))
}

#[test]
fn task_carries_the_invocation_and_its_authority() {
    let w = World::new();
    let inv = w.invocation(&w.bob, b"n1", None);
    let t = w.task(&inv).unwrap();
    assert_eq!(t.id, inv.payload.task_id());
    assert_eq!(t.invocation, inv.cid());
    assert_eq!(t.invoker, w.bob.did());
    assert_eq!(t.resource, w.alice.did());
    assert_eq!(t.operation, cmd("/wasm/run"));
    assert_eq!(t.input, inv.payload.args);
    assert_eq!(t.nonce, b"n1");
    assert_eq!(t.config, ExecConfig::default());
    assert_eq!(t.effect, EffectClass::Pure);
    // The delegation expires later than the invocation; the earlier one wins.
    assert_eq!(t.expires, Some(NOW + 300));
}

#[test]
fn work_id_ignores_nonce_invoker_and_meta_task_id_only_the_latter_two() {
    let w = World::new();
    let base = w.task(&w.invocation(&w.bob, b"n1", None)).unwrap();
    let other_nonce = w.task(&w.invocation(&w.bob, b"n2", None)).unwrap();
    let other_invoker = w.task(&w.invocation(&w.alice, b"n1", None)).unwrap();
    let other_meta = w
        .task(&w.invocation(
            &w.bob,
            b"n1",
            config_meta(Ipld::Map(map(&[("fuel", Ipld::Integer(9))]))),
        ))
        .unwrap();

    for t in [&other_nonce, &other_invoker, &other_meta] {
        assert_eq!(t.work_id, base.work_id);
    }
    assert_ne!(other_nonce.id, base.id);
    assert_eq!(other_invoker.id, base.id);
    assert_eq!(other_meta.id, base.id);
    assert_ne!(other_invoker.invocation, base.invocation);
    assert_eq!(other_meta.config.fuel, Some(9));
}

#[test]
fn work_id_depends_on_command_and_arguments() {
    let args = module_args(Ipld::Bytes(b"m".to_vec()));
    let base = task::work_id(&cmd("/wasm/run"), &args);
    assert_ne!(task::work_id(&cmd("/wasm/other"), &args), base);
    let mut changed = args.clone();
    changed.insert("func".into(), Ipld::String("sub".into()));
    assert_ne!(task::work_id(&cmd("/wasm/run"), &changed), base);
    let other_bytes = module_args(Ipld::Bytes(b"n".to_vec()));
    assert_ne!(task::work_id(&cmd("/wasm/run"), &other_bytes), base);
}

#[test]
fn inline_bytes_and_a_link_to_them_are_the_same_work() {
    let module = b"\0asm module".to_vec();
    let link = Ipld::Link(cid_for(RAW, &module));
    let inline = task::work_id(&cmd("/wasm/run"), &module_args(Ipld::Bytes(module.clone())));
    let linked = task::work_id(&cmd("/wasm/run"), &module_args(link.clone()));
    assert_eq!(inline, linked);

    // And the id is exactly the CID of {cmd, args} with the link in place.
    let expected = Ipld::Map(map(&[
        ("cmd", Ipld::String("/wasm/run".into())),
        ("args", Ipld::Map(module_args(link))),
    ]));
    assert_eq!(inline, dag_cbor_cid(&to_dag_cbor(&expected).unwrap()));

    // Through Task::new as well: two invocations, one inline, one by link.
    let w = World::new();
    let by_value = w.task(&w.invocation(&w.bob, b"", None)).unwrap();
    let by_link = w
        .task(&w.invocation_with(
            &w.bob,
            b"",
            None,
            module_args(Ipld::Link(cid_for(RAW, b"\0asm module"))),
        ))
        .unwrap();
    assert_eq!(by_value.work_id, by_link.work_id);
    assert_ne!(
        by_value.id, by_link.id,
        "the task id follows the spec and sees the difference"
    );
}

#[test]
fn nested_bytes_are_replaced_everywhere() {
    let blob = |s: &[u8]| Ipld::Bytes(s.to_vec());
    let link = |s: &[u8]| Ipld::Link(cid_for(RAW, s));
    let nested = |a: Ipld, b: Ipld, c: Ipld| {
        map(&[
            ("top", a),
            (
                "deep",
                Ipld::List(vec![
                    Ipld::Integer(1),
                    Ipld::Map(map(&[("x", b), ("s", Ipld::String("keep".into()))])),
                    Ipld::List(vec![Ipld::List(vec![c])]),
                ]),
            ),
            ("empty", Ipld::List(vec![])),
        ])
    };
    let inline = nested(blob(b"a"), blob(b"b"), blob(b"c"));
    let linked = nested(link(b"a"), link(b"b"), link(b"c"));
    let mixed = nested(blob(b"a"), link(b"b"), blob(b"c"));
    let run = cmd("/wasm/run");
    let id = task::work_id(&run, &inline);
    assert_eq!(task::work_id(&run, &linked), id);
    assert_eq!(task::work_id(&run, &mixed), id);
    let expected = Ipld::Map(map(&[
        ("cmd", Ipld::String("/wasm/run".into())),
        ("args", Ipld::Map(linked)),
    ]));
    assert_eq!(id, dag_cbor_cid(&to_dag_cbor(&expected).unwrap()));
    // The deepest bytes count: changing them changes the id.
    assert_ne!(
        task::work_id(&run, &nested(blob(b"a"), blob(b"b"), blob(b"z"))),
        id
    );
    // Empty args are fine too.
    assert_ne!(task::work_id(&run, &BTreeMap::new()), id);
}

#[test]
fn execution_settings_are_read_from_meta() {
    let w = World::new();
    let meta = config_meta(Ipld::Map(map(&[
        ("fuel", Ipld::Integer(1_000_000)),
        ("memory", Ipld::Integer(64 << 20)),
        ("timeout", Ipld::Integer(2500)),
        ("secret", Ipld::Bool(true)),
    ])));
    let t = w.task(&w.invocation(&w.bob, b"n", meta)).unwrap();
    assert_eq!(
        t.config,
        ExecConfig {
            fuel: Some(1_000_000),
            memory_bytes: Some(64 << 20),
            timeout: Some(Duration::from_millis(2500)),
            secret: Some(true),
        }
    );

    // Some fields only; other meta keys are not ours to judge.
    let mut meta = map(&[("trace", Ipld::String("abc".into()))]);
    meta.insert(
        CONFIG_KEY.into(),
        Ipld::Map(map(&[("timeout", Ipld::Integer(0))])),
    );
    let config = ExecConfig::from_meta(Some(&meta)).unwrap();
    assert_eq!(
        config,
        ExecConfig {
            timeout: Some(Duration::ZERO),
            ..ExecConfig::default()
        }
    );
    assert_eq!(ExecConfig::from_meta(None).unwrap(), ExecConfig::default());
    assert_eq!(
        ExecConfig::from_meta(Some(&map(&[("other", Ipld::Null)]))).unwrap(),
        ExecConfig::default()
    );
}

#[test]
fn malformed_execution_settings_are_refused_with_the_field_named() {
    let cases: Vec<(Ipld, &str)> = vec![
        (Ipld::Integer(5), "must be a map"),
        (Ipld::Null, "must be a map"),
        (
            Ipld::Map(map(&[("fuel", Ipld::String("lots".into()))])),
            "fuel` must be an integer",
        ),
        (
            Ipld::Map(map(&[("fuel", Ipld::Integer(-1))])),
            "fuel` must be a non-negative integer, not -1",
        ),
        (
            Ipld::Map(map(&[("memory", Ipld::Float(1.5))])),
            "memory` must be an integer",
        ),
        (
            Ipld::Map(map(&[("timeout", Ipld::Integer(-20))])),
            "timeout` must be a non-negative",
        ),
        (
            Ipld::Map(map(&[("secret", Ipld::Integer(1))])),
            "secret` must be a boolean",
        ),
        (
            Ipld::Map(map(&[("fule", Ipld::Integer(1))])),
            "unknown key \"fule\"",
        ),
    ];
    let w = World::new();
    for (config, expected) in cases {
        let meta = config_meta(config.clone());
        match ExecConfig::from_meta(meta.as_ref()) {
            Err(TaskError::InvalidConfig(message)) => {
                assert!(message.contains(expected), "{config:?}: {message}")
            }
            other => panic!("{config:?} gave {other:?}"),
        }
        // Task::new refuses the same way.
        let inv = w.invocation(&w.bob, b"n", meta);
        assert!(
            matches!(w.task(&inv), Err(TaskError::InvalidConfig(_))),
            "{config:?}"
        );
    }
}

#[test]
fn a_payload_other_than_the_authorised_one_is_refused() {
    let w = World::new();
    let inv = w.invocation(&w.bob, b"n", None);
    let auth = w.authorize(&inv);
    let mut other = inv.payload.clone();
    other
        .args
        .insert("func".into(), Ipld::String("steal".into()));
    match Task::new(&auth, &other, EffectClass::Pure) {
        Err(TaskError::Mismatch(message)) => assert!(message.contains("arguments"), "{message}"),
        r => panic!("{r:?}"),
    }
    let mut other = inv.payload.clone();
    other.sub = w.bob.did();
    assert!(matches!(
        Task::new(&auth, &other, EffectClass::Pure),
        Err(TaskError::Mismatch(m)) if m.contains("subject")
    ));
}

#[test]
fn unencodable_arguments_give_no_task() {
    let w = World::new();
    let inv = w.invocation(&w.bob, b"n", None);
    let auth = w.authorize(&inv);
    let mut payload = inv.payload.clone();
    payload.args.insert("x".into(), Ipld::Float(f64::NAN));
    let mut auth = auth;
    auth.args = payload.args.clone();
    auth.task = payload.task_id();
    assert!(matches!(
        Task::new(&auth, &payload, EffectClass::Destructive),
        Err(TaskError::Unencodable(_))
    ));
}
