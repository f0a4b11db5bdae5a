//! Reading JS numbers, strings and bigints as 64-bit quantities.

use napi::bindgen_prelude::*;

use super::error::bad_arg;
use crate::batch::{as_pairs, as_triples, BatchFlags};

pub(super) fn u64_of(name: &str, v: &BigInt) -> std::result::Result<u64, crate::Error> {
    let (signed, value, lossless) = v.get_u64();
    if signed || !lossless {
        return Err(bad_arg(format!("{name} must be a bigint in 0..2^64")));
    }
    Ok(value)
}

pub(super) fn num_or_str(name: &str, v: &Either<f64, String>) -> std::result::Result<u64, crate::Error> {
    match v {
        Either::A(n) if *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0 => Ok(*n as u64),
        Either::A(_) => Err(bad_arg(format!("{name} must be a safe non-negative integer, or a string"))),
        Either::B(s) => {
            let t = s.trim();
            let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.parse(),
            };
            r.map_err(|_| bad_arg(format!("{name}: cannot read {s:?} as an integer")))
        }
    }
}

/// A map batch as JS gives it to every container kind: iova, vaddr, size
/// triples, and one flags word for all entries or one per entry (read and
/// write for all when omitted).
pub(super) fn map_batch_args<'a>(
    entries: &'a [u64],
    flags: &'a Option<Either<u32, Uint32ArraySlice>>,
) -> std::result::Result<(&'a [[u64; 3]], BatchFlags<'a>), crate::Error> {
    let triples = as_triples(entries)
        .ok_or_else(|| bad_arg(format!("entries has {} values, not a multiple of 3 (iova, vaddr, size)", entries.len())))?;
    let flags = match flags {
        None => BatchFlags::All(crate::dma_flags::READ_WRITE),
        Some(Either::A(all)) => BatchFlags::All(*all),
        Some(Either::B(each)) => BatchFlags::Each(each),
    };
    Ok((triples, flags))
}

/// The mappings of a live hand-over as JS gives them: triples whose fields
/// `fields` names for the message (`iova, vaddr, size` for type1, `iova,
/// offset, size` for iommufd's file mappings).
pub(super) fn hand_over_mappings<'a>(mappings: &'a [u64], fields: &str) -> std::result::Result<&'a [[u64; 3]], crate::Error> {
    as_triples(mappings).ok_or_else(|| bad_arg(format!("mappings has {} values, not a multiple of 3 ({fields})", mappings.len())))
}

/// An unmap batch as JS gives it: iova, size pairs.
pub(super) fn unmap_batch_args(entries: &[u64]) -> std::result::Result<&[[u64; 2]], crate::Error> {
    as_pairs(entries).ok_or_else(|| bad_arg(format!("entries has {} values, not a multiple of 2 (iova, size)", entries.len())))
}
