//! What each CLI command does.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use ipld_core::ipld::Ipld;

use super::tokens::{Tokens, split_tokens};
use super::{
    Alg, Cli, Command, ContainerFormat, DelegateArgs, InspectArgs, InvokeArgs, KeyCommand,
    VerifyArgs,
};
use crate::did::{KeyAlg, PublicKey, SigningKey};
use crate::ipld::{from_dag_json, to_dag_json};
use crate::receipt::{ASSERT_COMMAND, Receipt};
use crate::ucan::container::{Container, Format};
use crate::ucan::delegation::DelegationBuilder;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::invocation::{Invocation, InvocationBuilder};
use crate::ucan::validate::{self, NoCache, NoRevocations, Options, unix_now};
use crate::ucan::{Command as UcanCommand, Policy};

/// Runs a parsed command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Key(KeyCommand::Generate { alg, output }) => key_generate(alg, output.as_deref()),
        Command::Key(KeyCommand::Did { file }) => {
            println!("{}", read_key(&file)?.did());
            Ok(ExitCode::SUCCESS)
        }
        Command::Delegate(args) => delegate(args),
        Command::Invoke(args) => invoke(args),
        Command::Verify(args) => verify(args),
        Command::Inspect(args) => inspect(args),
        Command::Serve(args) => {
            let _logging = super::logging::init(args.log_format)?;
            runtime()?.block_on(super::serve::serve(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Receipt(args) => fetch_receipt(args),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Prints a checked receipt (exit 0 if its outcome is ok, 1 if it is an error) or a refusal (exit 1).
fn print_receipt_result(
    result: Result<crate::receipt::Receipt, serde_json::Value>,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(receipt) => {
            println!("{}", serde_json::to_string_pretty(&receipt.to_json())?);
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

fn fetch_receipt(args: super::ReceiptArgs) -> anyhow::Result<ExitCode> {
    let remote = super::remote::Remote::new(&args.url)?;
    let rt = runtime()?;
    let did = rt.block_on(remote.did())?;
    if args.tree || args.dot {
        let tree = rt.block_on(super::tree::fetch(&remote, &args.cid, &did))?;
        if args.dot {
            print!("{}", super::tree::render_dot(&tree));
        } else {
            print!("{}", super::tree::render_text(&tree));
        }
        return Ok(ExitCode::SUCCESS);
    }
    print_receipt_result(rt.block_on(remote.receipt(&args.cid, &did))?)
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    SigningKey::from_key_file(&text).with_context(|| format!("in key file {}", path.display()))
}

fn key_generate(alg: Alg, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let alg = match alg {
        Alg::Ed25519 => KeyAlg::Ed25519,
        Alg::P256 => KeyAlg::P256,
        Alg::Secp256k1 => KeyAlg::Secp256k1,
    };
    let key = SigningKey::generate(alg);
    let text = format!("{}\n", key.to_key_file());
    match output {
        Some(path) => {
            write_private(path, text.as_bytes())?;
            eprintln!("{}", key.did());
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes a file only its owner can read (it holds a private key).
pub(super) fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {} (it must not exist yet)", path.display()))?;
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

/// `never` → no expiry; otherwise a duration from now (`30m`, `12h`, `7d`).
fn parse_expiry(text: &str, now: i64) -> anyhow::Result<Option<i64>> {
    if text == "never" {
        return Ok(None);
    }
    let duration = humantime::parse_duration(text).map_err(|e| {
        anyhow!("--exp {text:?}: {e} (use a duration such as 30m, 12h, 7d, or \"never\")")
    })?;
    Ok(Some(now.saturating_add(
        i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
    )))
}

/// A Unix timestamp, or a duration from now.
fn parse_time(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(ts) = text.parse::<i64>() {
        return Ok(ts);
    }
    let duration = humantime::parse_duration(text)
        .map_err(|e| anyhow!("{text:?}: {e} (use a Unix timestamp or a duration such as 1h)"))?;
    Ok(now.saturating_add(i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)))
}

fn parse_map(text: &str, what: &str) -> anyhow::Result<BTreeMap<String, Ipld>> {
    match from_dag_json(text).map_err(|e| anyhow!("{what}: not DAG-JSON: {e}"))? {
        Ipld::Map(map) => Ok(map),
        _ => bail!("{what}: must be a map, e.g. '{{\"key\": 1}}'"),
    }
}

fn delegate(args: DelegateArgs) -> anyhow::Result<ExitCode> {
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
    let exp = parse_expiry(&args.exp, now)?;
    let nbf = args
        .nbf
        .as_deref()
        .map(|t| parse_time(t, now))
        .transpose()?;
    let dlg = DelegationBuilder::new(args.to, sub, cmd)
        .policy(policy)
        .expires(exp)
        .not_before(nbf)
        .sign(&key)?;
    eprintln!("delegation {}", dlg.cid());
    write_output(args.output.as_deref(), dlg.bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn invoke(args: InvokeArgs) -> anyhow::Result<ExitCode> {
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

    // With --url, ask the gateway who it is: the invocation is addressed to it, and its receipt is
    // checked against that DID.
    let remote = match &args.url {
        Some(url) => {
            let remote = super::remote::Remote::new(url)?;
            let rt = runtime()?;
            let did = rt.block_on(remote.did())?;
            Some((remote, rt, did))
        }
        None => None,
    };
    let aud = args
        .aud
        .or_else(|| remote.as_ref().map(|(_, _, did)| did.clone()));

    let mut builder = InvocationBuilder::new(sub, cmd, inv_args)
        .proofs(chain.clone())
        .expires(parse_expiry(&args.exp, now)?)
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
    eprintln!("invocation {} (task {})", inv.cid(), inv.payload.task_id());

    // Earlier pipeline steps first, then this invocation, then every delegation once.
    let earlier = Tokens::read(&args.with)?;
    let mut container = Container::default();
    container
        .tokens
        .extend(earlier.invocations.iter().map(|i| i.bytes().to_vec()));
    container.tokens.push(inv.bytes().to_vec());
    let mut included = std::collections::HashSet::new();
    let delegations = chain.iter().map(|cid| &proofs.delegations[cid]).chain(
        earlier
            .delegation_order
            .iter()
            .map(|cid| &earlier.delegations[cid]),
    );
    for dlg in delegations {
        if included.insert(dlg.cid()) {
            container.tokens.push(dlg.bytes().to_vec());
        }
    }
    if let Some((remote, rt, did)) = remote {
        let answer = rt.block_on(remote.invoke(container.encode(Format::Raw), &did, inv.cid()))?;
        if args.wait
            && let Ok(receipt) = &answer
            && let Some(join) = super::wait::awaited(receipt)
        {
            let last = rt.block_on(super::wait::wait_for(&remote, &did, receipt, join))?;
            return print_receipt_result(last);
        }
        return print_receipt_result(answer);
    }
    let mut bytes = container.encode(container_format(args.format));
    if !matches!(args.format, ContainerFormat::Raw | ContainerFormat::RawGzip)
        && args.output.is_none()
    {
        bytes.push(b'\n');
    }
    write_output(args.output.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
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

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let mut all_valid = true;
    for token in split_tokens(&bytes)? {
        let report = match Envelope::decode(&token) {
            Ok(envelope) => {
                let (mut report, valid) = describe(&envelope)?;
                all_valid &= valid;
                // A receipt is an invocation of /ucan/assert; name it as such when it reads as one.
                if envelope.kind == Kind::Invocation
                    && Invocation::from_envelope(envelope)
                        .and_then(Receipt::from_invocation)
                        .is_ok()
                {
                    report["kind"] = serde_json::Value::from("receipt");
                }
                report
            }
            Err(e) => {
                all_valid = false;
                serde_json::json!({ "error": e.to_string(), "bytes": token.len() })
            }
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A readable view of one envelope and whether its signature verifies against its issuer.
fn describe(envelope: &Envelope) -> anyhow::Result<(serde_json::Value, bool)> {
    let issuer = match &envelope.payload {
        Ipld::Map(map) => match map.get("iss") {
            Some(Ipld::String(iss)) => Some(iss.clone()),
            _ => None,
        },
        _ => None,
    };
    let signature = match issuer.as_deref().map(PublicKey::from_did) {
        Some(Ok(key)) => match envelope.verify(&key) {
            Ok(()) => "valid".to_owned(),
            Err(e) => format!("invalid: {e}"),
        },
        Some(Err(e)) => format!("unverifiable: {e}"),
        None => "unverifiable: no issuer".to_owned(),
    };
    let kind = match envelope.kind {
        Kind::Delegation => "delegation",
        Kind::Invocation => "invocation",
    };
    let payload_json = to_dag_json(&envelope.payload).map_err(|e| anyhow!(e))?;
    let payload: serde_json::Value = serde_json::from_str(&payload_json)?;
    let report = serde_json::json!({
        "kind": kind,
        "cid": envelope.cid.to_string(),
        "tag": envelope.tag,
        "alg": format!("{:?}", envelope.header.alg),
        "signature": signature,
        "payload": payload,
    });
    Ok((report, signature == "valid"))
}
