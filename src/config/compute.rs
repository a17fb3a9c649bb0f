//! A route's `[route.compute]` caps: the CPU, GPU and disk one task forwarded to a compute network
//! may use (memory and time come from `[limits]`). The raw form, what the operator wrote, lives here
//! beside its resolution; `policy_file` calls in with its positioned error builder.

use serde::Deserialize;
use toml::Spanned;

use super::PolicyFileErrorKind as Kind;
use crate::exec::Compute;

/// Default CPU cap of a route forwarding to a compute network, in millicores (one core).
pub const DEFAULT_CPU_MILLI: u64 = 1000;
/// Default GPU cap: none.
pub const DEFAULT_GPU: u64 = 0;
/// Default disk cap: 10 GiB.
pub const DEFAULT_DISK_BYTES: u64 = 10 << 30;

impl Default for Compute {
    /// The built-in defaults (`DEFAULT_CPU_MILLI`, `DEFAULT_GPU`, `DEFAULT_DISK_BYTES`).
    fn default() -> Self {
        Compute {
            cpu_milli: DEFAULT_CPU_MILLI,
            gpu: DEFAULT_GPU,
            disk_bytes: DEFAULT_DISK_BYTES,
        }
    }
}

/// A `[route.compute]` table as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompute {
    cpu: Option<Spanned<String>>,
    gpu: Option<u32>,
    disk: Option<Spanned<String>>,
}

/// A positioned error: span, kind, message.
pub(super) type Fail<'a> =
    &'a dyn Fn(&std::ops::Range<usize>, Kind, String) -> super::PolicyFileError;

/// `base` with every cap the table sets replaced.
pub(super) fn compute(
    base: Compute,
    raw: Option<&RawCompute>,
    fail: Fail<'_>,
) -> Result<Compute, super::PolicyFileError> {
    let mut out = base;
    let Some(raw) = raw else {
        return Ok(out);
    };
    if let Some(cpu) = &raw.cpu {
        out.cpu_milli = crate::exec::bacalhau::mapping::parse_cpu(cpu.get_ref())
            .map_err(|e| fail(&cpu.span(), Kind::Size, e.to_string()))?;
    }
    if let Some(gpu) = raw.gpu {
        out.gpu = u64::from(gpu);
    }
    if let Some(disk) = &raw.disk {
        out.disk_bytes = super::policy_file::parse_size(disk.get_ref())
            .map_err(|e| fail(&disk.span(), Kind::Size, e))?;
    }
    Ok(out)
}
