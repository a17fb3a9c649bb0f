//! A gateway process killed (-9) while a task runs, between the run and the commit of its receipt,
//! then started again on the same data: the invocation that got no answer is never stuck. A pure
//! task's invocation can be sent again and runs; a destructive task is never started a second time
//! and its invocation is answered `Interrupted` once its run can no longer be going.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

use ipld_core::ipld::Ipld;
use ucan_gateway::did::{KeyAlg, SigningKey};
use ucan_gateway::receipt::Receipt;
use ucan_gateway::ucan::container::Container;
use ucan_gateway::ucan::invocation::InvocationBuilder;
use ucan_gateway::ucan::validate::unix_now;
use ucan_gateway::ucan::{Command, Invocation};

use crate::gateway::{args, container, error_name, post_to, wasm};

/// Spins until the task's time limit cuts it off.
const SPIN_WAT: &str = r#"(module (func (export "spin") (loop (br 0))))"#;

/// A `serve` process and the address it listens on. It runs with the operator's key, so the
/// operator's invocations (no audience) address it.
struct Serving {
    child: Child,
    addr: String,
}

impl Serving {
    /// Starts the gateway binary on `dir` with the policy there, and waits until it serves.
    fn start(dir: &Path) -> Serving {
        let mut child = Process::new(env!("CARGO_BIN_EXE_ucan-gateway"))
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .arg("--data-dir")
            .arg(dir)
            .arg("--policy")
            .arg(dir.join("policy.toml"))
            .arg("--key")
            .arg(dir.join("operator.key"))
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            // Read to the end, so the process never blocks on a full pipe.
            for line in stderr.lines().map_while(Result::ok) {
                let json: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                if json["message"] == "ucan-gateway serving"
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(json["addr"].as_str().unwrap_or_default().to_owned());
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the gateway did not start serving");
        Serving { child, addr }
    }

    /// Kills the process with SIGKILL: no drain, no flush, no destructor runs.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    async fn post(&self, body: Vec<u8>) -> (u16, Vec<u8>) {
        post_to(&self.addr, body).await
    }

    /// The receipt stored for invocation `cid`, if any.
    async fn stored_receipt(&self, cid: &cid::Cid) -> Option<Receipt> {
        let response = reqwest::Client::new()
            .get(format!("http://{}/receipts/{cid}", self.addr))
            .send()
            .await
            .unwrap();
        if response.status() != 200 {
            return None;
        }
        let bytes = response.bytes().await.unwrap();
        let tokens = Container::decode(&bytes).unwrap().tokens;
        Some(Receipt::decode(&tokens[0]).unwrap())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn policy(dir: &Path, operator: &SigningKey, effect: &str) {
    std::fs::write(dir.join("operator.key"), operator.to_key_file()).unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        format!(
            r#"
subjects = ["{}"]
[limits]
fuel = 1_000_000_000_000
timeout = "2s"
[[route]]
command = "/wasm/run"
backend = "wasm"
effect = "{effect}"
"#,
            operator.did()
        ),
    )
    .unwrap();
}

fn spin(operator: &SigningKey) -> Invocation {
    InvocationBuilder::new(
        operator.did(),
        Command::parse("/wasm/run").unwrap(),
        args(vec![
            ("module", Ipld::Bytes(wasm(SPIN_WAT))),
            ("func", Ipld::String("spin".into())),
            ("args", Ipld::List(vec![])),
        ]),
    )
    .expires(Some(unix_now() + 300))
    .sign(operator)
    .unwrap()
}

/// Sends `body` on a task of its own, kills the gateway while the task runs, and checks that no
/// answer came.
async fn kill_mid_run(gw: Serving, body: Vec<u8>) {
    let addr = gw.addr.clone();
    let sent = tokio::spawn(async move {
        reqwest::Client::new()
            .post(format!("http://{addr}/"))
            .body(body)
            .send()
            .await
    });
    // Inside the task's 2 s run.
    tokio::time::sleep(Duration::from_millis(700)).await;
    gw.kill_9();
    if let Ok(response) = sent.await.unwrap() {
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        panic!(
            "the killed gateway must not have answered, but answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_pure_invocation_cut_off_by_a_crash_runs_when_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    policy(dir.path(), &operator, "pure");
    let inv = spin(&operator);
    let body = container(&inv, &[]);

    kill_mid_run(Serving::start(dir.path()), body.clone()).await;

    let gw = Serving::start(dir.path());
    assert!(gw.stored_receipt(&inv.cid()).await.is_none());
    // The replay key was to be committed with the receipt, so neither is stored: the same bytes run
    // again (and end at the time limit), where a key committed before the run would answer 409.
    let (status, bytes) = gw.post(body.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let receipt = Receipt::decode(&Container::decode(&bytes).unwrap().tokens[0]).unwrap();
    assert_eq!(receipt.body.ran, inv.cid());
    assert_eq!(error_name(&receipt), "Timeout", "{:?}", receipt.body.out);
    // Answered now, and only once.
    assert_eq!(gw.stored_receipt(&inv.cid()).await, Some(receipt));
    let (status, _) = gw.post(body).await;
    assert_eq!(status, 409);
}

#[cfg(unix)]
#[tokio::test]
async fn a_destructive_invocation_cut_off_by_a_crash_is_answered_interrupted_and_never_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let operator = SigningKey::generate(KeyAlg::Ed25519);
    policy(dir.path(), &operator, "destructive");
    let inv = spin(&operator);
    let body = container(&inv, &[]);

    kill_mid_run(Serving::start(dir.path()), body.clone()).await;

    let gw = Serving::start(dir.path());
    // The intent was committed before the run: sent again, the task is not started a second time.
    let (status, bytes) = gw.post(body).await;
    assert_eq!(status, 409, "{}", String::from_utf8_lossy(&bytes));
    // Once the run cannot be going any more (time limit plus slack), the sweep answers it.
    let started = Instant::now();
    let receipt = loop {
        if let Some(receipt) = gw.stored_receipt(&inv.cid()).await {
            break receipt;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no receipt for the cut-off invocation"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    receipt.verify(None).unwrap();
    assert_eq!(
        error_name(&receipt),
        "Interrupted",
        "{:?}",
        receipt.body.out
    );
}
