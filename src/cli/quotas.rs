//! `delegate --quota [RESOURCE=]N/DURATION`: the options, possibly repeated, as the quota a
//! delegation's `meta` carries (`docs/http-api.md`, Delegation quotas), refused here when the
//! gateway would refuse it.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use ipld_core::ipld::Ipld;

use crate::gateway::Resource;

/// The `--quota [RESOURCE=]N/DURATION` options as the delegation's `meta`: `{"gateway/quota":
/// {RESOURCE: N, …, "per": DURATION}}` (a bare `N` limits invocations), checked to read back as the
/// gateway will read it. Every option must name the same window, and each resource at most once.
pub(super) fn quota_meta(options: &[String]) -> anyhow::Result<BTreeMap<String, Ipld>> {
    let mut limits = BTreeMap::new();
    let mut window: Option<(String, std::time::Duration)> = None;
    for text in options {
        let (limit, per) = text.split_once('/').ok_or_else(|| {
            anyhow!("--quota {text:?}: write [RESOURCE=]N/DURATION, e.g. 100/1h or fuel=5000000/1d")
        })?;
        let (resource, n) = match limit.split_once('=') {
            Some((resource, n)) => (resource.trim(), n),
            None => (Resource::Invocations.key(), limit),
        };
        let resource = Resource::from_key(resource).ok_or_else(|| {
            let known: Vec<&str> = Resource::ALL.iter().map(|r| r.key()).collect();
            anyhow!(
                "--quota {text:?}: {resource:?} is not a resource a quota limits (one of {})",
                known.join(", ")
            )
        })?;
        let n: i128 = n
            .trim()
            .parse()
            .map_err(|_| anyhow!("--quota {text:?}: {n:?} is not a whole number"))?;
        if limits
            .insert(resource.key().to_owned(), Ipld::Integer(n))
            .is_some()
        {
            bail!("--quota {text:?}: {} is limited twice", resource.key());
        }
        let per = per.trim();
        let length = humantime::parse_duration(per)
            .map_err(|_| anyhow!("--quota {text:?}: {per:?} is not a duration (e.g. 1h, 1d)"))?;
        match &window {
            Some((first, other)) if *other != length => bail!(
                "--quota {text:?}: a delegation's quota has one window; {first:?} was given already"
            ),
            Some(_) => {}
            None => window = Some((per.to_owned(), length)),
        }
    }
    let (per, _) = window.ok_or_else(|| anyhow!("--quota: none given"))?;
    limits.insert("per".to_owned(), Ipld::String(per));
    let quota = Ipld::Map(limits);
    // Read back as the gateway reads it, so a quota it would refuse fails here.
    crate::gateway::Quota::parse(&quota).map_err(|e| anyhow!("--quota: {e}"))?;
    Ok(BTreeMap::from([(
        crate::gateway::QUOTA_META.to_owned(),
        quota,
    )]))
}
