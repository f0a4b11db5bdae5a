//! Reading JS numbers, strings and bigints as 64-bit quantities.

use napi::bindgen_prelude::*;

use super::error::bad_arg;

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
