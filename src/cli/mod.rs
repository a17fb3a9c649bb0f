//! The command-line interface: key tooling, delegation, invocation, verification and inspection.
//!
//! This is the application edge, so errors are `anyhow` here (and only here and in `main.rs`); the
//! library modules below keep typed errors.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod commands;
mod follow;
mod hints;
mod logging;
mod manual;
mod quotas;
pub mod remote;
pub mod serve;
mod times;
pub mod tokens;
pub mod tree;
mod wait;

/// Capability-secured invocation gateway: UCAN 1.0 tokens in, signed receipts out.
#[derive(Debug, Parser)]
#[command(name = "ucan-gateway", version, about, long_about = None)]
pub struct Cli {
    /// How results are printed: `text` for people, `json` for scripts (one JSON document per line).
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Output {
    /// For people: tokens as files, receipts as indented JSON, DIDs on their own line.
    Text,
    /// For scripts: one compact JSON document per line on standard output.
    Json,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: accept invocations over HTTP, run authorised work, answer with signed receipts.
    Serve(serve::ServeArgs),
    /// Create key files and show their DIDs.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Delegate a command on a subject to another principal (prints the delegation token).
    Delegate(DelegateArgs),
    /// Create a signed invocation and bundle it with its proofs in a container.
    Invoke(InvokeArgs),
    /// Check an invocation and its proof chain; prints one JSON line. Exit status: 0 valid, 1 invalid, 2 usage error.
    Verify(VerifyArgs),
    /// Show any token or container as readable DAG-JSON, with CIDs and signature status.
    Inspect(InspectArgs),
    /// Fetch a receipt from a gateway by invocation CID, task id or receipt CID, and check its
    /// signature; `--tree` draws what ran and the effects it set off.
    #[command(visible_alias = "receipts")]
    Receipt(ReceiptArgs),
    /// Ask a URL whether it answers 2xx (exit 0) or not (exit 1): a health check for images with no
    /// shell or curl, e.g. `ucan-gateway probe http://127.0.0.1:8080/livez`.
    Probe(ProbeArgs),
    /// Print a shell completion script (e.g. `ucan-gateway completions bash > /etc/bash_completion.d/ucan-gateway`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), e.g. `ucan-gateway man | man -l -`.
    Man,
}

/// `receipt` arguments.
#[derive(Debug, Args)]
pub struct ReceiptArgs {
    /// An invocation CID, task id or receipt CID.
    pub cid: String,
    /// Print the invocation → receipt → effects tree (effects' receipts fetched by task id); with
    /// --output json, the tree as one JSON document.
    #[arg(long, conflicts_with = "dot")]
    pub tree: bool,
    /// With --tree: follow the workflow as it grows (the gateway's event stream), printing each
    /// receipt as it is stored, indented under the one whose effect it answers, until every
    /// effect has its receipt; with --output json, one JSON line per receipt.
    #[arg(long, requires = "tree")]
    pub follow: bool,
    /// With --follow: wait up to this many seconds (at most 120, the gateway's longest wait) for
    /// a receipt not stored yet, e.g. of an invocation about to be sent, instead of failing at once.
    #[arg(long, requires = "follow", value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(0..=crate::server::MAX_WAIT_SECS))]
    pub wait: Option<u64>,
    /// Print the same tree as a Graphviz DOT digraph.
    #[arg(long)]
    pub dot: bool,
    /// The gateway's base URL.
    #[arg(
        long,
        env = "UCAN_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
}

/// `probe` arguments.
#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The URL to fetch (GET).
    pub url: String,
    /// Give up after this long (e.g. 3s, 500ms).
    #[arg(long, default_value = "3s")]
    pub timeout: humantime::Duration,
}

/// `key …` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate a new private key file (base64 of the multicodec-prefixed key).
    Generate {
        /// Signature algorithm.
        #[arg(long, value_enum, default_value_t = Alg::Ed25519)]
        alg: Alg,
        /// Write the key here instead of standard output (created with owner-only permissions).
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Replace the file if it exists (the key in it is lost for good).
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Print the did:key of a key file.
    Did {
        /// The key file.
        file: PathBuf,
    },
}

/// Signature algorithms for new keys.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Alg {
    Ed25519,
    P256,
    Secp256k1,
}

/// `delegate` arguments.
#[derive(Debug, Args)]
pub struct DelegateArgs {
    /// The delegator's key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The DID receiving the authority.
    #[arg(long)]
    pub to: String,
    /// The command delegated (it also covers every command below it), e.g. /wasm/run, or / for all.
    #[arg(long)]
    pub cmd: String,
    /// The subject. Defaults to the subject of the --proof chain, or to the delegator itself (a root delegation).
    #[arg(long, conflicts_with = "powerline")]
    pub sub: Option<String>,
    /// Delegate for any subject (sub: null). Powerful: the audience inherits everything the delegator is later given.
    #[arg(long)]
    pub powerline: bool,
    /// A policy on invocation arguments, as DAG-JSON, e.g. '[["==", ".func", "add"]]'.
    #[arg(long)]
    pub policy: Option<String>,
    /// Expiry: a duration from now (30m, 12h, 7d), a Unix time in seconds, or "never". An expiry
    /// that is not in the future (0s, a past time) is refused unless --force.
    #[arg(long, default_value = "30d")]
    pub exp: String,
    /// Not before: a duration from now (10m) or a Unix time in seconds.
    #[arg(long)]
    pub nbf: Option<String>,
    /// Make the token even if its expiry is not in the future or not after --nbf.
    #[arg(long)]
    pub force: bool,
    /// A quota on what this delegation may prove per window, as [RESOURCE=]N/DURATION: 100/1h
    /// (invocations), fuel=5000000/1d (Wasm fuel), cpu_seconds=600/1d (run time), jobs=10/1d
    /// (Bacalhau jobs). Repeat it to limit several resources over one window. Written into the
    /// signed meta as "gateway/quota"; ucan-gateway counts every invocation whose chain includes
    /// it. Other UCAN libraries ignore the key.
    #[arg(long = "quota", value_name = "[RESOURCE=]N/DURATION")]
    pub quotas: Vec<String>,
    /// Delegations that give the delegator its authority (checked to lead to the delegator).
    #[arg(long = "proof")]
    pub proofs: Vec<PathBuf>,
    /// Write the token here instead of standard output.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
}

/// `invoke` arguments.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The invoker's key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The subject whose authority is used. Defaults to the root of the --proof chain, or the invoker.
    #[arg(long)]
    pub sub: Option<String>,
    /// The command to run, e.g. /wasm/run.
    #[arg(long)]
    pub cmd: String,
    /// The arguments, a DAG-JSON map.
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// The executor the invocation is for (e.g. the gateway's DID), if not the subject. With --url it
    /// defaults to the gateway's DID.
    #[arg(long)]
    pub aud: Option<String>,
    /// Send the invocation to the gateway at this URL and print the checked receipt, instead of
    /// writing a container.
    #[arg(long, env = "UCAN_GATEWAY_URL")]
    pub url: Option<String>,
    /// Delegations proving the invoker's authority (token files or containers, any order).
    #[arg(long = "proof")]
    pub proofs: Vec<PathBuf>,
    /// Earlier steps of a pipeline: containers written by `invoke -o`, whose invocations (and
    /// delegations) go into the same request, before this one. This invocation's arguments may await
    /// their results (`{"await/ok": {"/": "<invocation CID>"}}`).
    #[arg(long = "with")]
    pub with: Vec<PathBuf>,
    /// Expiry: a duration from now (30s, 5m, 1h), a Unix time in seconds, or "never" (which a
    /// gateway refuses unless the route allows it). Default: five minutes from now. An expiry that
    /// is not in the future is refused unless --force.
    #[arg(long, default_value = "5m")]
    pub exp: String,
    /// Make the invocation even if its expiry is not in the future.
    #[arg(long)]
    pub force: bool,
    /// Metadata map as DAG-JSON (e.g. execution limits).
    #[arg(long)]
    pub meta: Option<String>,
    /// Use an empty nonce, so equal invocations share a task id (for idempotent work).
    #[arg(long)]
    pub idempotent: bool,
    /// With --url: send the delegations by reference only (their CIDs in `prf`), for a gateway that
    /// keeps proofs; if it answers 510 `UnavailableProof`, send again once with the delegations it
    /// names as missing.
    #[arg(long, requires = "url")]
    pub proof_by_reference: bool,
    /// With --url: if the receipt awaits a job (a `/bacalhau/job/await` join effect), show the job's
    /// state while waiting and print the final receipt.
    #[arg(long, requires = "url")]
    pub wait: bool,
    /// Container encoding.
    #[arg(long, value_enum, default_value_t = ContainerFormat::Base64)]
    pub format: ContainerFormat,
    /// Write the container here instead of standard output.
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
}

/// Container encodings offered on the command line.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ContainerFormat {
    /// Raw CBOR bytes (header `@`).
    Raw,
    /// Base64, standard alphabet, padded (header `B`).
    Base64,
    /// Base64, URL alphabet, unpadded (header `C`).
    Base64url,
    /// Gzipped raw bytes (header `M`).
    RawGzip,
    /// Gzipped, base64 standard (header `O`).
    Base64Gzip,
    /// Gzipped, base64 URL (header `P`).
    Base64urlGzip,
}

/// `verify` arguments.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The invocation: a token file, or a container holding it (and possibly its proofs).
    #[arg(long)]
    pub invocation: PathBuf,
    /// Delegation token files or containers.
    #[arg(long = "proof")]
    pub proofs: Vec<PathBuf>,
    /// A further container of proofs.
    #[arg(long)]
    pub container: Option<PathBuf>,
    /// Validate as of this Unix time instead of now.
    #[arg(long)]
    pub at: Option<i64>,
    /// Allowed clock skew in seconds for nbf/exp.
    #[arg(long, default_value_t = crate::ucan::validate::DEFAULT_LEEWAY_SECS)]
    pub leeway: i64,
    /// No clock-skew allowance at all (same as --leeway 0).
    #[arg(long)]
    pub strict: bool,
}

/// `inspect` arguments.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A token file or container.
    pub file: PathBuf,
}

/// Parses the command line and runs it, returning the process exit code.
pub fn run() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    commands::dispatch(cli)
}
