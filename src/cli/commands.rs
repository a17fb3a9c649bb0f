//! What each CLI command does.

use std::collections::BTreeMap;
use std::io::Write;
use std::num::NonZeroUsize;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use ipld_core::ipld::Ipld;

use super::hints::{self, Sent};
use super::times::{self, Window};
use super::tokens::Tokens;
use super::{
    Alg, Cli, Command, ContainerFormat, DelegateArgs, InspectArgs, InvokeArgs, KeyCommand, Output,
    VerifyArgs,
};
use crate::did::{KeyAlg, PublicKey, SigningKey};
use crate::inspect::Inspection;
use crate::ipld::from_dag_json;
use crate::receipt::{ASSERT_COMMAND, Receipt};
use crate::ucan::container::{Container, Format};
use crate::ucan::delegation::DelegationBuilder;
use crate::ucan::invocation::InvocationBuilder;
use crate::ucan::validate::{self, NoCache, NoRevocations, Options, unix_now};
use crate::ucan::{Command as UcanCommand, Delegation, Policy};

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let output = cli.output;
    match cli.command {
        Command::Key(KeyCommand::Generate { alg, out, force }) => {
            key_generate(alg, out.as_deref(), force, output)
        }
        Command::Key(KeyCommand::Did { file }) => {
            let did = read_key(&file)?.did();
            match output {
                Output::Text => println!("{did}"),
                Output::Json => println!("{}", serde_json::json!({ "did": did })),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Delegate(args) => delegate(args, output),
        Command::Invoke(args) => invoke(args, output),
        // One JSON line either way: its verdict is meant for scripts.
        Command::Verify(args) => verify(args),
        Command::Inspect(args) => inspect(args, output),
        Command::Serve(args) => {
            let _logging = super::logging::init(args.log_format)?;
            runtime_with(args.worker_threads)?.block_on(super::serve::serve(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Receipt(args) => fetch_receipt(args, output),
        Command::Probe(args) => probe(args, output),
        Command::Completions { shell } => {
            super::manual::completions(shell)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            super::manual::man()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `probe URL`: 0 when the URL answers 2xx within the timeout, 1 otherwise (never 2: a supervisor
/// reads any failure as unhealthy, and a refused connection is the commonest one).
fn probe(args: super::ProbeArgs, output: Output) -> anyhow::Result<ExitCode> {
    let answered = runtime()?.block_on(async {
        let http = reqwest::Client::builder()
            .timeout(args.timeout.into())
            .build()
            .context("building the HTTP client")?;
        anyhow::Ok(http.get(&args.url).send().await.map(|r| r.status()))
    })?;
    let (healthy, said) = match answered {
        Ok(status) => (status.is_success(), status.as_u16().to_string()),
        Err(e) => (false, format!("no answer: {e}")),
    };
    match output {
        Output::Text => println!("{} {said}", args.url),
        Output::Json => println!(
            "{}",
            serde_json::json!({ "url": args.url, "healthy": healthy, "status": said })
        ),
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints `value`: indented for people, one line for scripts.
fn print_json(value: &serde_json::Value, output: Output) -> anyhow::Result<()> {
    match output {
        Output::Text => println!("{}", serde_json::to_string_pretty(value)?),
        Output::Json => println!("{value}"),
    }
    Ok(())
}

/// A refusal's `error.name`, if it has one.
fn refusal_name(refusal: &serde_json::Value) -> Option<&str> {
    refusal["error"]["name"].as_str()
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    runtime_with(None)
}

/// The async runtime with `workers` worker threads (default: one per core).
fn runtime_with(workers: Option<NonZeroUsize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(workers) = workers {
        builder.worker_threads(workers.get());
    }
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Prints a checked receipt (exit 0 if its outcome is ok, 1 if it is an error) or a refusal (exit 1).
fn print_receipt_result(
    result: Result<crate::receipt::Receipt, serde_json::Value>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(receipt) => {
            print_json(&receipt.to_json(), output)?;
            Ok(if receipt.body.out.is_ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Err(refusal) => {
            println!("{refusal}");
            Ok(ExitCode::from(1))
        }
    }
}

fn fetch_receipt(args: super::ReceiptArgs, output: Output) -> anyhow::Result<ExitCode> {
    let remote = super::remote::Remote::new(&args.url)?;
    let rt = runtime()?;
    let did = rt.block_on(remote.did())?;
    if args.follow {
        rt.block_on(super::follow::follow(
            &remote,
            &args.cid,
            &did,
            output == Output::Json,
            args.wait,
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.tree || args.dot {
        let tree = rt.block_on(super::tree::fetch(&remote, &args.cid, &did))?;
        if args.dot {
            print!("{}", super::tree::render_dot(&tree));
        } else if output == Output::Json {
            println!("{}", super::tree::render_json(&tree));
        } else {
            print!("{}", super::tree::render_text(&tree));
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_receipt_result(rt.block_on(remote.receipt(&args.cid, &did))?, output)
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    SigningKey::from_key_file(&text).with_context(|| format!("in key file {}", path.display()))
}

fn key_generate(
    alg: Alg,
    out: Option<&Path>,
    force: bool,
    output: Output,
) -> anyhow::Result<ExitCode> {
    let (alg, name) = match alg {
        Alg::Ed25519 => (KeyAlg::Ed25519, "ed25519"),
        Alg::P256 => (KeyAlg::P256, "p256"),
        Alg::Secp256k1 => (KeyAlg::Secp256k1, "secp256k1"),
    };
    let key = SigningKey::generate(alg);
    let text = format!("{}\n", key.to_key_file());
    match out {
        Some(path) => {
            if force && path.exists() {
                std::fs::remove_file(path)
                    .with_context(|| format!("replacing {}", path.display()))?;
            }
            write_private(path, text.as_bytes())?;
            match output {
                Output::Text => eprintln!("{}", key.did()),
                Output::Json => println!(
                    "{}",
                    serde_json::json!({ "did": key.did(), "alg": name, "file": path })
                ),
            }
        }
        None => match output {
            Output::Text => print!("{text}"),
            Output::Json => println!(
                "{}",
                serde_json::json!({ "did": key.did(), "alg": name, "key": key.to_key_file() })
            ),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read (it holds a private key). An existing file is never
/// replaced here: losing a private key to a repeated command cannot be undone.
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "{} already exists; it was left as it is (pass --force to replace it, losing the key it holds)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    file.write_all(bytes)?;
    Ok(())
}

fn write_output(output: Option<&Path>, bytes: &[u8]) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes)?;
            out.flush()?;
            Ok(())
        }
    }
}

fn parse_map(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, Ipld>> {
    match from_dag_json(text).map_err(|e| anyhow!("{what}: not DAG-JSON: {e}"))? {
        Ipld::Map(map) => Ok(map),
        _ => bail!("{what}: must be a map, e.g. '{{\"key\": 1}}'"),
    }
}

fn delegate(args: DelegateArgs, output: Output) -> anyhow::Result<ExitCode> {
    let key = read_key(&args.key)?;
    let now = unix_now();
    let cmd = UcanCommand::parse(&args.cmd)?;
    let policy = match &args.policy {
        Some(text) => Policy::from_json(text)?,
        None => Policy::empty(),
    };
    PublicKey::from_did(&args.to).context("--to")?;

    // With proofs, check the new link extends a chain that really reaches this key, so a third party
    // is not handed a delegation that can never validate.
    let proofs = Tokens::read(&args.proofs)?;
    let chain = proofs.chain_to(&key.did());
    let mut chain_subject = None;
    if let Some(last) = chain.last() {
        let last = &proofs.delegations[last];
        if last.payload.aud != key.did() {
            bail!(
                "the --proof delegations do not lead to this key ({})",
                key.did()
            );
        }
        for cid in &chain {
            let d = &proofs.delegations[cid];
            if !d.payload.cmd.proves(&cmd) {
                bail!(
                    "proof {cid} delegates {} only, which does not cover {cmd}",
                    d.payload.cmd
                );
            }
        }
        chain_subject = proofs.delegations[&chain[0]].payload.sub.clone();
    }

    let sub = if args.powerline {
        None
    } else {
        Some(args.sub.or(chain_subject).unwrap_or_else(|| key.did()))
    };
    if let Some(sub) = &sub {
        PublicKey::from_did(sub).context("--sub")?;
    }
    let Window { exp, nbf } = times::window(&args.exp, args.nbf.as_deref(), now, args.force)?;
    let mut builder = DelegationBuilder::new(args.to.clone(), sub.clone(), cmd.clone())
        .policy(policy)
        .expires(exp)
        .not_before(nbf);
    if !args.quotas.is_empty() {
        builder = builder.meta(super::quotas::quota_meta(&args.quotas)?);
    }
    let dlg = builder.sign(&key)?;
    match output {
        Output::Text => {
            eprintln!("delegation {}", dlg.cid());
            write_output(args.out.as_deref(), dlg.bytes())?;
        }
        Output::Json => {
            let mut json = serde_json::json!({
                "cid": dlg.cid().to_string(),
                "iss": key.did(),
                "aud": args.to,
                "sub": sub,
                "cmd": cmd.as_str(),
                "exp": exp,
                "nbf": nbf,
            });
            attach(&mut json, "token", args.out.as_deref(), dlg.bytes())?;
            println!("{json}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// With `--output json`: writes `bytes` to `out` and names the file, or puts them in the JSON as
/// base64 (`key`), since raw CBOR cannot share standard output with a JSON line.
fn attach(
    json: &mut serde_json::Value,
    key: &str,
    out: Option<&Path>,
    bytes: &[u8],
) -> anyhow::Result<()> {
    match out {
        Some(path) => {
            write_output(Some(path), bytes)?;
            json["file"] = serde_json::json!(path);
        }
        None => {
            use base64::Engine as _;
            json[key] = base64::engine::general_purpose::STANDARD
                .encode(bytes)
                .into();
        }
    }
    Ok(())
}

fn invoke(args: InvokeArgs, output: Output) -> anyhow::Result<ExitCode> {
    let key = read_key(&args.key)?;
    let now = unix_now();
    let cmd = UcanCommand::parse(&args.cmd)?;
    let inv_args = parse_map(&args.args, "--args")?;
    let proofs = Tokens::read(&args.proofs)?;
    let chain = proofs.chain_to(&key.did());
    let root_subject = chain
        .first()
        .and_then(|cid| proofs.delegations[cid].payload.sub.clone());
    let sub = args.sub.or(root_subject).unwrap_or_else(|| key.did());

    let Window { exp, .. } = times::window(&args.exp, None, now, args.force)?;

    // With --url, ask the gateway who it is: the invocation is addressed to it, and its receipt is
    // checked against that DID.
    let remote = match &args.url {
        Some(url) => {
            let remote = super::remote::Remote::new(url)?;
            let rt = runtime()?;
            let described = rt.block_on(remote.describe())?;
            Some((remote, rt, described))
        }
        None => None,
    };
    let aud = args
        .aud
        .or_else(|| remote.as_ref().map(|(_, _, d)| d.did.clone()));

    let mut builder = InvocationBuilder::new(sub.clone(), cmd, inv_args)
        .proofs(chain.clone())
        .expires(exp)
        .issued_at(Some(now));
    if let Some(aud) = aud {
        PublicKey::from_did(&aud).context("--aud")?;
        builder = builder.audience(aud);
    }
    if let Some(meta) = &args.meta {
        builder = builder.meta(parse_map(meta, "--meta")?);
    }
    if args.idempotent {
        builder = builder.nonce(Vec::new());
    }
    let inv = builder.sign(&key)?;
    if output == Output::Text || remote.is_some() {
        eprintln!("invocation {} (task {})", inv.cid(), inv.payload.task_id());
    }

    // Earlier pipeline steps first, then this invocation, then every delegation once.
    let earlier = Tokens::read(&args.with)?;
    let mut container = Container::default();
    container
        .tokens
        .extend(earlier.invocations.iter().map(|i| i.bytes().to_vec()));
    container.tokens.push(inv.bytes().to_vec());
    let mut included = std::collections::HashSet::new();
    let delegations: Vec<&Delegation> = chain
        .iter()
        .map(|cid| &proofs.delegations[cid])
        .chain(
            earlier
                .delegation_order
                .iter()
                .map(|cid| &earlier.delegations[cid]),
        )
        .filter(|dlg| included.insert(dlg.cid()))
        .collect();
    // By reference, the first request carries only the invocations; the delegations follow if the
    // gateway asks for them.
    let by_reference = args.proof_by_reference && remote.is_some();
    let invocations_only = container.clone();
    if !by_reference {
        container
            .tokens
            .extend(delegations.iter().map(|d| d.bytes().to_vec()));
    }
    if let Some((remote, rt, described)) = remote {
        let did = &described.did;
        // Every step's receipt is printed, in pipeline order, so a script sees what each returned.
        let steps: Vec<_> = earlier
            .invocations
            .iter()
            .map(|i| i.cid())
            .chain(std::iter::once(inv.cid()))
            .collect();
        let sent = Sent {
            proofs: chain.len(),
            subject: &sub,
            invoker: &key.did(),
            served: Some(&described.subjects),
        };
        let mut result = rt.block_on(remote.invoke(container.encode(Format::Raw), did, &steps))?;
        if by_reference
            && let Err(refusal) = &result
            && let Some(missing) = missing_proofs(refusal)
        {
            let mut resend = invocations_only;
            let wanted: Vec<&&Delegation> = delegations
                .iter()
                .filter(|d| missing.contains(&d.cid().to_string()))
                .collect();
            eprintln!(
                "the gateway lacks {} of the proofs; sending {} of them again",
                missing.len(),
                wanted.len()
            );
            resend
                .tokens
                .extend(wanted.iter().map(|d| d.bytes().to_vec()));
            result = rt.block_on(remote.invoke(resend.encode(Format::Raw), did, &steps))?;
        }
        let answered = match result {
            Ok(answered) => answered,
            Err(refusal) => {
                hints::print(refusal_name(&refusal), &sent);
                return print_receipt_result(Err(refusal), output);
            }
        };
        let Some((last, before)) = answered.receipts.split_last() else {
            return refused_step(&answered, &sent);
        };
        let mut code = ExitCode::SUCCESS;
        for receipt in before {
            if print_receipt_result(Ok(receipt.clone()), output)? != ExitCode::SUCCESS {
                code = ExitCode::from(1);
            }
        }
        if answered.refused.is_some() {
            print_receipt_result(Ok(last.clone()), output)?;
            return refused_step(&answered, &sent);
        }
        let last = match super::wait::awaited(last) {
            Some(join) if args.wait => {
                rt.block_on(super::wait::wait_for(&remote, did, last, join))?
            }
            _ => Ok(last.clone()),
        };
        let last_code = print_receipt_result(last, output)?;
        return Ok(if last_code == ExitCode::SUCCESS {
            code
        } else {
            last_code
        });
    }
    let mut bytes = container.encode(container_format(args.format));
    if output == Output::Json {
        let mut json = serde_json::json!({
            "invocation": inv.cid().to_string(),
            "task": inv.payload.task_id().to_string(),
            "exp": exp,
        });
        attach(&mut json, "container", args.out.as_deref(), &bytes)?;
        println!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    if !matches!(args.format, ContainerFormat::Raw | ContainerFormat::RawGzip) && args.out.is_none()
    {
        bytes.push(b'\n');
    }
    write_output(args.out.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// The CIDs a 510 `UnavailableProof` names as missing, if `refusal` is one.
fn missing_proofs(refusal: &serde_json::Value) -> Option<Vec<String>> {
    let error = &refusal["error"];
    if error["name"] != "UnavailableProof" {
        return None;
    }
    let missing: Vec<String> = error["missing"]
        .as_array()?
        .iter()
        .filter_map(|c| c.as_str().map(str::to_owned))
        .collect();
    (!missing.is_empty()).then_some(missing)
}

/// Prints the refusal of a pipeline step (after the receipts of the steps before it); exit 1.
fn refused_step(answered: &super::remote::Answered, sent: &Sent<'_>) -> anyhow::Result<ExitCode> {
    let (cid, name) = answered
        .refused
        .as_ref()
        .ok_or_else(|| anyhow!("the gateway answered with no receipt"))?;
    hints::print(Some(name), sent);
    println!(
        "{}",
        serde_json::json!({ "error": {
            "name": name,
            "message": format!("the gateway refused the invocation {cid}; the steps after it did not run"),
            "invocation": cid.to_string(),
        }})
    );
    Ok(ExitCode::from(1))
}

fn container_format(format: ContainerFormat) -> Format {
    match format {
        ContainerFormat::Raw => Format::Raw,
        ContainerFormat::Base64 => Format::Base64Std,
        ContainerFormat::Base64url => Format::Base64Url,
        ContainerFormat::RawGzip => Format::RawGzip,
        ContainerFormat::Base64Gzip => Format::Base64StdGzip,
        ContainerFormat::Base64urlGzip => Format::Base64UrlGzip,
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let mut files = vec![args.invocation.clone()];
    files.extend(args.proofs.iter().cloned());
    files.extend(args.container.iter().cloned());
    // Missing or unreadable files are usage errors (exit 2); undecodable tokens are invalid input (exit 1).
    let mut contents = Vec::with_capacity(files.len());
    for path in &files {
        contents.push(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?);
    }
    let mut tokens = Tokens::default();
    for bytes in &contents {
        if let Err(e) = tokens.add_bytes(bytes) {
            return Ok(print_verify_error("MalformedToken", &format!("{e:#}")));
        }
    }
    let invocation = match tokens.one_invocation() {
        Ok(inv) => inv,
        Err(e) => return Ok(print_verify_error("MalformedToken", &e.to_string())),
    };
    // A receipt asserts on its issuer's own authority: check its signature and principals, not a
    // delegation chain. A /ucan/assert that does not read as a receipt is validated as an invocation.
    if invocation.payload.cmd.as_str() == ASSERT_COMMAND
        && let Ok(receipt) = Receipt::from_invocation(invocation.clone())
    {
        return Ok(match receipt.verify(None) {
            Ok(()) => {
                println!(
                    "{}",
                    serde_json::json!({ "ok": { "receipt": receipt.to_json() } })
                );
                ExitCode::SUCCESS
            }
            Err(e) => print_verify_error(e.kind.name(), &e.message),
        });
    }
    let now = args.at.unwrap_or_else(unix_now);
    let opts = if args.strict {
        Options::strict(now)
    } else {
        Options {
            now,
            leeway: args.leeway.max(0),
        }
    };
    match validate::validate(
        invocation,
        &tokens.delegations,
        opts,
        &NoRevocations,
        &NoCache,
    ) {
        Ok(authorized) => {
            println!("{}", serde_json::json!({ "ok": authorized.to_json() }));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            hints::print(
                Some(e.kind.name()),
                &Sent {
                    proofs: invocation.payload.prf.len(),
                    subject: &invocation.payload.sub,
                    invoker: &invocation.payload.iss,
                    served: None,
                },
            );
            let mut error = serde_json::json!({ "name": e.kind.name(), "message": e.message });
            if let Some(proof) = e.proof() {
                error["proof"] = serde_json::Value::String(proof.to_string());
            }
            println!("{}", serde_json::json!({ "error": error }));
            Ok(ExitCode::from(1))
        }
    }
}

fn print_verify_error(name: &str, message: &str) -> ExitCode {
    println!(
        "{}",
        serde_json::json!({ "error": { "name": name, "message": message } })
    );
    ExitCode::from(1)
}

fn inspect(args: InspectArgs, output: Output) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let seen = Inspection::of(&bytes).map_err(|e| anyhow!(e.to_string()))?;
    match output {
        // One document per token, as each token reads on its own.
        Output::Text => {
            for token in &seen.tokens {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&Inspection::token_json(token))?
                );
            }
        }
        Output::Json => println!("{}", seen.to_json()),
    }
    Ok(if seen.all_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
