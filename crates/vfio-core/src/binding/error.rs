//! Errors as JS sees them: every failure is thrown as an instance of one
//! class, `VfioError` (error.js in this package, registered by index.js at
//! load), carrying stable properties, so TypeScript checks it with
//! `instanceof` and no layer above rebuilds it.

use std::cell::RefCell;

use napi::bindgen_prelude::*;
use napi::{Env, JsValue, ValueType};
use napi_derive::napi;

thread_local! {
    /// The class errors are built from. One per JS thread: a napi reference
    /// belongs to the env (the main thread's, or one worker's) that made it,
    /// and each env loads the addon, and so registers the class, itself.
    static ERROR_CLASS: RefCell<Option<FunctionRef<String, ()>>> = const { RefCell::new(None) };
}

/// Registers the class every error is thrown as: `new ctor(message)`, then
/// `code`, `errno`, `ioctl`, `object` and, where known, `entryIndex`,
/// `detail` and `hint` set on it. index.js calls this once with `VfioError`;
/// until then (the addon loaded bare) errors are plain `Error`s with the same
/// properties.
#[napi(ts_args_type = "ctor: new (message: string) => Error")]
pub fn use_error_class(ctor: Function<String, ()>) -> Result<()> {
    let r = ctor.create_ref()?;
    ERROR_CLASS.with(|c| *c.borrow_mut() = Some(r));
    Ok(())
}

/// A new instance of the registered class, or a plain `Error` without one.
fn new_error<'e>(env: &'e Env, message: String) -> Result<Object<'e>> {
    let made = ERROR_CLASS.with(|c| -> Result<Option<Unknown<'e>>> {
        match c.borrow().as_ref() {
            Some(class) => Ok(Some(class.borrow_back(env)?.new_instance(message.clone())?)),
            None => Ok(None),
        }
    })?;
    match made {
        Some(u) if u.get_type()? == ValueType::Object => {
            // SAFETY: checked above that the value is an object.
            unsafe { u.cast::<Object>() }
        }
        Some(_) => Err(napi::Error::new(Status::ObjectExpected, "the registered error class made no object")),
        None => env.create_error(napi::Error::new(Status::GenericFailure, message)),
    }
}

/// Builds the JS error for `e`, with its properties, and hands it to napi to throw.
pub(super) fn js_err(env: &Env, e: crate::Error) -> napi::Error {
    let build = || -> Result<napi::Error> {
        let mut obj = new_error(env, e.to_string())?;
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
