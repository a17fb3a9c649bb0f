//! Reading token files for the CLI: a file holds one raw token or a container (any header form), and
//! the tokens in it are sorted into invocations and delegations.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use cid::Cid;

use crate::inspect::split_tokens;
use crate::ucan::envelope::{Envelope, Kind};
use crate::ucan::{Delegation, Invocation};

/// Every token found in a set of files.
#[derive(Debug, Default)]
pub struct Tokens {
    /// Invocations (and receipts, which are invocations of `/ucan/assert`), in file order.
    pub invocations: Vec<Invocation>,
    /// Delegations by CID.
    pub delegations: HashMap<Cid, Delegation>,
    /// Delegations in the order they were read (for stable output).
    pub delegation_order: Vec<Cid>,
}

impl Tokens {
    /// Reads every token in `paths`.
    pub fn read(paths: &[impl AsRef<Path>]) -> anyhow::Result<Self> {
        let mut tokens = Tokens::default();
        for path in paths {
            let path = path.as_ref();
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            tokens
                .add_bytes(&bytes)
                .with_context(|| format!("in {}", path.display()))?;
        }
        Ok(tokens)
    }

    /// Adds the tokens in one file's contents.
    pub fn add_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        for token in split_tokens(bytes).map_err(|e| anyhow::anyhow!(e.to_string()))? {
            let envelope = Envelope::decode(&token)?;
            match envelope.kind {
                Kind::Invocation => self.invocations.push(Invocation::from_envelope(envelope)?),
                Kind::Delegation => {
                    let dlg = Delegation::from_envelope(envelope)?;
                    let cid = dlg.cid();
                    if self.delegations.insert(cid, dlg).is_none() {
                        self.delegation_order.push(cid);
                    }
                }
            }
        }
        Ok(())
    }

    /// The single invocation, or an error naming how many there were.
    pub fn one_invocation(&self) -> anyhow::Result<&Invocation> {
        match self.invocations.as_slice() {
            [one] => Ok(one),
            [] => bail!("no invocation found"),
            many => bail!("{} invocations found; expected one", many.len()),
        }
    }

    /// Orders the delegations into a chain that ends at `holder`, root first: start from the one whose
    /// audience is `holder` and follow issuers back to the root. Falls back to reading order when the
    /// delegations do not form a single line (validation will then say what is wrong).
    pub fn chain_to(&self, holder: &str) -> Vec<Cid> {
        let ordered = self.try_chain_to(holder);
        if ordered.len() == self.delegations.len() {
            ordered
        } else {
            self.delegation_order.clone()
        }
    }

    fn try_chain_to(&self, holder: &str) -> Vec<Cid> {
        let mut chain = Vec::new();
        let mut want = holder.to_owned();
        while chain.len() < self.delegations.len() {
            let next = self.delegation_order.iter().find(|cid| {
                !chain.contains(*cid)
                    && self
                        .delegations
                        .get(*cid)
                        .is_some_and(|d| d.payload.aud == want)
            });
            let Some(cid) = next else { break };
            chain.push(*cid);
            want = self.delegations[cid].payload.iss.clone();
        }
        chain.reverse();
        chain
    }
}
