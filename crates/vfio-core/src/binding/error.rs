//! Errors as JS sees them: one `Error` with stable properties.

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};

/// Builds the JS error for `e`, with its properties, and hands it to napi to throw.
pub(super) fn js_err(env: &Env, e: crate::Error) -> napi::Error {
    let build = || -> Result<napi::Error> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, e.to_string()))?;
        obj.set_named_property("code", e.code())?;
        obj.set_named_property("errno", e.errno)?;
        obj.set_named_property("ioctl", e.ioctl)?;
        obj.set_named_property("object", e.object.as_str())?;
        if let Some(k) = e.entry {
            obj.set_named_property("entryIndex", k as f64)?;
        }
        if let Some(d) = &e.detail {
            obj.set_named_property("detail", d.as_str())?;
        }
        if !e.hint().is_empty() {
            obj.set_named_property("hint", e.hint())?;
        }
        Ok(napi::Error::from(obj.to_unknown()))
    };
    build().unwrap_or_else(|x| x)
}

pub(super) fn bad_arg(what: impl Into<String>) -> crate::Error {
    crate::Error::new(libc::EINVAL, "argument", "vfio-core binding").with_detail(what)
}
