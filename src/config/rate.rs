//! The `[rate_limits]` table: the operator's budgets per invoker DID and per root issuer, in
//! requests per second with a burst (a token bucket) and tasks running at once. The raw form lives
//! here beside its resolution; `policy_file` calls in with its positioned error builder.
//!
//! The budgets are enforced per replica, in memory (`gateway::rate`): each replica allows the full
//! budget, so N replicas allow up to N times as much.

use serde::Deserialize;
use toml::Spanned;

use super::PolicyFileErrorKind as Kind;
use super::compute::Fail;

/// Default cap on principals tracked for each kind of budget (invokers, issuers).
pub const DEFAULT_MAX_TRACKED: usize = 10_000;

/// The largest rate, burst, concurrency or tracking cap accepted: beyond it a limit is a typo.
const MAX_VALUE: f64 = 10_000_000.0;

/// The operator's rate limits, resolved. No budget set (the default): nothing is limited.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// The budget of each invoker DID (an invocation's `iss`).
    pub invoker: Budget,
    /// The budget of each root issuer: the principal a chain starts from, which in UCAN 1.0 is
    /// always the invocation's subject.
    pub issuer: Budget,
    /// How many principals of each kind are tracked at most; idle ones are forgotten first.
    pub max_tracked: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            invoker: Budget::default(),
            issuer: Budget::default(),
            max_tracked: DEFAULT_MAX_TRACKED,
        }
    }
}

impl RateLimits {
    /// Whether any budget is set.
    pub fn any(&self) -> bool {
        self.invoker.is_set() || self.issuer.is_set()
    }
}

/// One principal's budget.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Budget {
    /// Requests per second with a burst; `None`: unlimited.
    pub rate: Option<Rate>,
    /// Tasks running at once; `None`: unlimited.
    pub concurrent: Option<u32>,
}

impl Budget {
    /// Whether this budget limits anything.
    pub fn is_set(&self) -> bool {
        self.rate.is_some() || self.concurrent.is_some()
    }
}

/// A token bucket: `per_second` tokens added each second, at most `burst` held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once after a quiet spell.
    pub burst: u32,
}

/// The `[rate_limits]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimits {
    invoker: Option<RawBudget>,
    issuer: Option<RawBudget>,
    max_tracked: Option<Spanned<i64>>,
}

/// `[rate_limits.invoker]` or `[rate_limits.issuer]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    rate: Option<Spanned<f64>>,
    burst: Option<Spanned<i64>>,
    concurrent: Option<Spanned<i64>>,
}

/// The table resolved.
pub(super) fn rate_limits(
    raw: Option<&RawRateLimits>,
    fail: Fail<'_>,
) -> Result<RateLimits, super::PolicyFileError> {
    let Some(raw) = raw else {
        return Ok(RateLimits::default());
    };
    Ok(RateLimits {
        invoker: budget(raw.invoker.as_ref(), "invoker", fail)?,
        issuer: budget(raw.issuer.as_ref(), "issuer", fail)?,
        max_tracked: match &raw.max_tracked {
            None => DEFAULT_MAX_TRACKED,
            Some(n) => count(n, "max_tracked", fail)? as usize,
        },
    })
}

fn budget(
    raw: Option<&RawBudget>,
    key: &str,
    fail: Fail<'_>,
) -> Result<Budget, super::PolicyFileError> {
    let Some(raw) = raw else {
        return Ok(Budget::default());
    };
    let rate = match (&raw.rate, &raw.burst) {
        (None, None) => None,
        (None, Some(burst)) => {
            return Err(fail(
                &burst.span(),
                Kind::RateLimit,
                format!("rate_limits.{key}.burst needs a rate (requests per second)"),
            ));
        }
        (Some(rate), burst) => {
            let per_second = *rate.get_ref();
            if !(per_second > 0.0 && per_second <= MAX_VALUE) {
                return Err(fail(
                    &rate.span(),
                    Kind::RateLimit,
                    format!(
                        "rate_limits.{key}.rate must be requests per second above 0 and at most \
                         {MAX_VALUE}, not {per_second}"
                    ),
                ));
            }
            let burst = match burst {
                // A quiet principal may send one second's worth at once.
                None => per_second.ceil().max(1.0) as u32,
                Some(b) => count(b, &format!("{key}.burst"), fail)?,
            };
            Some(Rate { per_second, burst })
        }
    };
    let concurrent = match &raw.concurrent {
        None => None,
        Some(n) => Some(count(n, &format!("{key}.concurrent"), fail)?),
    };
    Ok(Budget { rate, concurrent })
}

/// A whole number from 1 to [`MAX_VALUE`].
fn count(raw: &Spanned<i64>, key: &str, fail: Fail<'_>) -> Result<u32, super::PolicyFileError> {
    let n = *raw.get_ref();
    u32::try_from(n)
        .ok()
        .filter(|&n| n >= 1 && f64::from(n) <= MAX_VALUE)
        .ok_or_else(|| {
            fail(
                &raw.span(),
                Kind::RateLimit,
                format!("rate_limits.{key} must be a whole number from 1 to {MAX_VALUE}, not {n}"),
            )
        })
}
