//! The raw policy file, as the operator wrote it, and its resolution into [`OperatorPolicy`].
//!
//! Every raw value that resolution may reject is wrapped in [`toml::Spanned`], so the error can
//! point at its line and column; errors the TOML reader finds itself (syntax, unknown or missing
//! keys, wrong types) carry a span too. Resolution stops at the first error: one precise message is
//! more use to an operator than a cascade of consequences.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    BackendConfig, DEFAULT_EFFECT_DEPTH, DEFAULT_EFFECT_FANOUT, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_PROMISE_WAIT, EffectBounds, Limits, OperatorPolicy, PolicyFileError,
    PolicyFileErrorKind as Kind, Route, Subject,
};
use crate::did::PublicKey;
use crate::exec::registry::{self, SettingsErrorKind};
use crate::task::EffectClass;
use crate::ucan::{Command, Policy};

/// The whole file. Every table denies unknown keys: a misspelt limit silently ignored would leave
/// the operator believing in a limit that is not there.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    subjects: Option<Spanned<Vec<Spanned<String>>>>,
    limits: Option<RawLimits>,
    max_body: Option<Spanned<RawSize>>,
    effects: Option<RawEffects>,
    rate_limits: Option<super::rate::RawRateLimits>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

/// The `[effects]` table: bounds on effects the gateway runs itself.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEffects {
    max_depth: Option<Spanned<i64>>,
    max_fanout: Option<Spanned<i64>>,
    promise_wait: Option<Spanned<String>>,
}

/// A `[limits]` table, at the top or in a route; every key is optional and overrides the layer
/// below it.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    fuel: Option<Spanned<RawFuel>>,
    memory: Option<Spanned<RawSize>>,
    timeout: Option<Spanned<String>>,
    max_input: Option<Spanned<RawSize>>,
    max_output: Option<Spanned<RawSize>>,
}

/// One `[[route]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    command: Spanned<String>,
    backend: Spanned<String>,
    effect: Spanned<String>,
    allow_no_expiry: Option<bool>,
    run_effects: Option<bool>,
    gateway_effects: Option<bool>,
    admission: Option<Spanned<String>>,
    limits: Option<RawLimits>,
    compute: Option<super::compute::RawCompute>,
}

/// Fuel as written: an integer, range-checked during resolution.
struct RawFuel(i64);

impl<'de> Deserialize<'de> for RawFuel {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written so a wrong type reads "expected a positive integer", not "expected i64".
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawFuel;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a positive integer")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawFuel, E> {
                Ok(RawFuel(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A size as written: a plain integer of bytes, or a string with a unit such as `"64MiB"`.
enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than an untagged enum, so a wrong type gets a message that
        // says what is expected instead of "did not match any variant".
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size: an integer of bytes or a string such as \"64MiB\"")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawSize, E> {
                i64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::custom("size too large"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// The text being resolved, to turn byte spans into positioned errors.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn error(&self, span: &Range<usize>, kind: Kind, message: String) -> PolicyFileError {
        let (line, column) = line_column(self.text, span.start);
        PolicyFileError {
            origin: self.origin.to_owned(),
            line,
            column,
            message,
            kind,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset; offsets past the end or inside a
/// character are moved back to the nearest character start.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = text.floor_char_boundary(offset.min(text.len()));
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Parses and resolves a policy file.
pub(super) fn resolve(text: &str, origin: &str) -> Result<OperatorPolicy, PolicyFileError> {
    let src = Source { text, origin };
    let toml_error = |e: toml::de::Error| {
        let span = e.span().unwrap_or(0..0);
        src.error(&span, Kind::Toml, e.message().trim_end().to_owned())
    };
    // Backend kinds read their own sections (`[[bacalhau]]`, …); the rest is the policy's.
    let mut table = toml::de::DeTable::parse(text).map_err(toml_error)?;
    let mut sections = Vec::new();
    for kind in registry::BACKENDS {
        if let Some(name) = kind.section()
            && let Some(section) = table.get_mut().remove(name)
        {
            sections.push((*kind, section));
        }
    }
    let raw = RawPolicy::deserialize(toml::de::Deserializer::from(table)).map_err(toml_error)?;

    let subjects = match &raw.subjects {
        None => vec![Subject::Gateway],
        Some(list) => subjects(&src, list)?,
    };
    let defaults = match &raw.limits {
        None => Limits::default(),
        Some(table) => limits(&src, Limits::default(), table)?,
    };
    let max_body_bytes = match &raw.max_body {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(size) => size_usize(&src, size)?,
    };

    let effects = match &raw.effects {
        None => EffectBounds::default(),
        Some(table) => EffectBounds {
            max_depth: bound(
                &src,
                table.max_depth.as_ref(),
                DEFAULT_EFFECT_DEPTH,
                "max_depth",
            )?,
            max_fanout: bound(
                &src,
                table.max_fanout.as_ref(),
                DEFAULT_EFFECT_FANOUT,
                "max_fanout",
            )?,
            promise_wait: match &table.promise_wait {
                None => DEFAULT_PROMISE_WAIT,
                Some(text) => duration(&src, text)?,
            },
        },
    };
    let rate_limits =
        super::rate::rate_limits(raw.rate_limits.as_ref(), &|span, kind, message| {
            src.error(span, kind, message)
        })?;
    let mut backends: Vec<BackendConfig> = Vec::new();
    for (kind, section) in sections {
        let taken: Vec<String> = registry::built_in()
            .map(str::to_owned)
            .chain(backends.iter().map(|b| b.name.clone()))
            .collect();
        let declared = kind
            .configure(toml::de::ValueDeserializer::from(section), &taken)
            .map_err(|e| {
                let kind = match e.kind {
                    SettingsErrorKind::Toml => Kind::Toml,
                    SettingsErrorKind::Duration => Kind::Duration,
                    _ => Kind::Backend,
                };
                src.error(&e.span.unwrap_or(0..0), kind, e.message)
            })?;
        backends.extend(declared);
    }
    let mut names: Vec<&str> = Vec::new();
    for name in registry::built_in() {
        names.push(name);
    }
    names.extend(backends.iter().map(|b| b.name.as_str()));

    let mut routes = Vec::with_capacity(raw.route.len());
    let mut seen: HashMap<Command, usize> = HashMap::new();
    for raw_route in &raw.route {
        let route = route(&src, &defaults, raw_route, &names)?;
        let (line, _) = line_column(text, raw_route.command.span().start);
        if let Some(first) = seen.insert(route.command.clone(), line) {
            return Err(src.error(
                &raw_route.command.span(),
                Kind::DuplicateRoute,
                format!(
                    "duplicate route for command {} (first defined at line {first})",
                    route.command
                ),
            ));
        }
        routes.push(route);
    }

    Ok(OperatorPolicy {
        subjects,
        defaults,
        routes,
        max_body_bytes,
        effects,
        backends,
        rate_limits,
    })
}

fn subjects(
    src: &Source<'_>,
    list: &Spanned<Vec<Spanned<String>>>,
) -> Result<Vec<Subject>, PolicyFileError> {
    if list.get_ref().is_empty() {
        return Err(src.error(
            &list.span(),
            Kind::Subject,
            "subjects must name at least one subject (\"self\" or a did:key), or the gateway honours nobody"
                .to_owned(),
        ));
    }
    let mut out: Vec<Subject> = Vec::with_capacity(list.get_ref().len());
    for item in list.get_ref() {
        let text = item.get_ref().as_str();
        let subject = if text == "self" {
            Subject::Gateway
        } else if text.contains('#') {
            // A fragment names one of a principal's keys, not the principal; accepting it would
            // never match an invocation's subject.
            return Err(src.error(
                &item.span(),
                Kind::Subject,
                format!("subject {text:?} must be a DID without a fragment"),
            ));
        } else {
            PublicKey::from_did(text).map_err(|e| {
                src.error(
                    &item.span(),
                    Kind::Subject,
                    format!("subject must be \"self\" or a did:key: {e}"),
                )
            })?;
            Subject::Did(text.to_owned())
        };
        if out.contains(&subject) {
            return Err(src.error(
                &item.span(),
                Kind::DuplicateSubject,
                format!("subject {subject} is listed twice"),
            ));
        }
        out.push(subject);
    }
    Ok(out)
}

fn route(
    src: &Source<'_>,
    defaults: &Limits,
    raw: &RawRoute,
    backends: &[&str],
) -> Result<Route, PolicyFileError> {
    let command = Command::parse(raw.command.get_ref())
        .map_err(|e| src.error(&raw.command.span(), Kind::Command, e.to_string()))?;
    // Spec 1.0, "Reserved Commands": `/ucan/*` belongs to UCAN itself. The one we serve,
    // `/ucan/revoke`, is built into the gateway and needs no route.
    let reserved = Command::parse("/ucan").is_ok_and(|ucan| ucan.proves(&command));
    if reserved {
        return Err(src.error(
            &raw.command.span(),
            Kind::Command,
            format!(
                "command {command} is in the reserved /ucan namespace (/ucan/revoke is built into the gateway)"
            ),
        ));
    }

    let backend = raw.backend.get_ref();
    if !backends.contains(&backend.as_str()) {
        return Err(src.error(
            &raw.backend.span(),
            Kind::Backend,
            format!(
                "unknown backend {backend:?} (expected one of {})",
                backends.join(", ")
            ),
        ));
    }

    let effect = effect_class(raw.effect.get_ref()).ok_or_else(|| {
        src.error(
            &raw.effect.span(),
            Kind::Effect,
            format!(
                "unknown effect class {:?} (expected one of {})",
                raw.effect.get_ref(),
                EFFECTS.map(EffectClass::as_str).join(", ")
            ),
        )
    })?;

    let admission = match &raw.admission {
        None => Policy::empty(),
        Some(text) => Policy::from_json(text.get_ref()).map_err(|e| {
            src.error(
                &text.span(),
                Kind::Admission,
                format!("malformed admission policy at {}: {}", e.path, e.reason),
            )
        })?,
    };

    let mut limits = match &raw.limits {
        None => *defaults,
        Some(table) => limits(src, *defaults, table)?,
    };
    limits.compute = super::compute::compute(
        limits.compute,
        raw.compute.as_ref(),
        &|span, kind, message| src.error(span, kind, message),
    )?;

    Ok(Route {
        command,
        backend: backend.clone(),
        effect,
        limits,
        admission,
        allow_no_expiry: raw.allow_no_expiry.unwrap_or(false),
        run_effects: raw.run_effects.unwrap_or(false),
        gateway_effects: raw.gateway_effects.unwrap_or(false),
    })
}

/// A positive count no larger than 64 (deeper or wider effect trees are a runaway, not a plan).
fn bound(
    src: &Source<'_>,
    raw: Option<&Spanned<i64>>,
    default: usize,
    key: &str,
) -> Result<usize, PolicyFileError> {
    let Some(raw) = raw else {
        return Ok(default);
    };
    let n = *raw.get_ref();
    usize::try_from(n)
        .ok()
        .filter(|n| (1..=64).contains(n))
        .ok_or_else(|| {
            src.error(
                &raw.span(),
                Kind::Effects,
                format!("effects.{key} must be an integer from 1 to 64, not {n}"),
            )
        })
}

/// Every effect class, in the order error messages list them.
const EFFECTS: [EffectClass; 3] = [
    EffectClass::Pure,
    EffectClass::Nondestructive,
    EffectClass::Destructive,
];

fn effect_class(name: &str) -> Option<EffectClass> {
    EFFECTS.into_iter().find(|e| e.as_str() == name)
}

/// `base` with every key the table sets replaced.
fn limits(src: &Source<'_>, base: Limits, raw: &RawLimits) -> Result<Limits, PolicyFileError> {
    let mut out = base;
    if let Some(fuel) = &raw.fuel {
        let n = fuel.get_ref().0;
        out.fuel = u64::try_from(n).ok().filter(|&f| f > 0).ok_or_else(|| {
            src.error(
                &fuel.span(),
                Kind::Fuel,
                format!("fuel must be a positive integer, not {n}"),
            )
        })?;
    }
    if let Some(memory) = &raw.memory {
        out.memory_bytes = size(src, memory)?;
    }
    if let Some(timeout) = &raw.timeout {
        out.timeout = duration(src, timeout)?;
    }
    if let Some(size) = &raw.max_input {
        out.max_input_bytes = size_usize(src, size)?;
    }
    if let Some(size) = &raw.max_output {
        out.max_output_bytes = size_usize(src, size)?;
    }
    Ok(out)
}

fn size(src: &Source<'_>, raw: &Spanned<RawSize>) -> Result<u64, PolicyFileError> {
    let parsed = match raw.get_ref() {
        RawSize::Bytes(n) => {
            u64::try_from(*n).map_err(|_| format!("size must not be negative: {n}"))
        }
        RawSize::Text(text) => parse_size(text),
    };
    match parsed {
        Ok(0) => Err(src.error(
            &raw.span(),
            Kind::Size,
            "size must be greater than zero".to_owned(),
        )),
        Ok(n) => Ok(n),
        Err(message) => Err(src.error(&raw.span(), Kind::Size, message)),
    }
}

fn size_usize(src: &Source<'_>, raw: &Spanned<RawSize>) -> Result<usize, PolicyFileError> {
    let n = size(src, raw)?;
    usize::try_from(n).map_err(|_| {
        src.error(
            &raw.span(),
            Kind::Size,
            format!("size {n} is too large for this platform"),
        )
    })
}

fn duration(src: &Source<'_>, raw: &Spanned<String>) -> Result<Duration, PolicyFileError> {
    let text = raw.get_ref();
    let err = |message| src.error(&raw.span(), Kind::Duration, message);
    let d = humantime::parse_duration(text).map_err(|e| {
        err(format!(
            "invalid duration {text:?}: {e} (write e.g. \"5s\" or \"250ms\")"
        ))
    })?;
    if d.is_zero() {
        return Err(err("duration must be greater than zero".to_owned()));
    }
    Ok(d)
}

/// Units a size may carry. Binary units are powers of 1024, decimal ones powers of 1000; both are
/// accepted because operators copy figures from places that use either.
const SIZE_UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("TB", 1_000_000_000_000),
];

/// Parses `"<digits>[ ]<unit>"`, e.g. `"64MiB"`, `"1 MB"` or `"4096"` (bytes). Whole numbers only:
/// a fractional size would need rounding rules nobody wants to look up.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?} (write a whole number with an optional unit, e.g. \"64MiB\"; units: {})",
            SIZE_UNITS
                .iter()
                .map(|(u, _)| *u)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(bad());
    }
    let unit = unit.trim_start();
    let multiplier = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, m)| *m)
            .ok_or_else(bad)?
    };
    let too_large = || format!("size {text:?} is too large");
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    n.checked_mul(multiplier).ok_or_else(too_large)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1 KiB"), Ok(1024));
        assert_eq!(parse_size("2kB"), Ok(2000));
        assert_eq!(parse_size("3 GB"), Ok(3_000_000_000));
        assert_eq!(parse_size("7B"), Ok(7));
        for bad in [
            "", "MiB", "1.5MiB", "-1MiB", "64 mib", "64MiBs", "1 2", "0x10",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("20000000TiB").is_err());
    }

    #[test]
    fn positions() {
        let text = "ab\ncd\r\néf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 1), (1, 2));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (3, 1));
        // After the two-byte 'é', 'f' is the second character of its line.
        assert_eq!(line_column(text, 9), (3, 2));
        // Inside 'é' moves back to its start; past the end clamps.
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 100), (3, 3));
    }
}
