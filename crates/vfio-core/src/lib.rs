//! vfio-core: the whole VFIO user API behind one backend seam.
//!
//! The pure core (uapi, backends, batching) is usable from Rust alone; the
//! Node binding lives in `binding` behind the `napi` cargo feature.

pub mod backend;
pub mod error;
pub mod uapi;

#[cfg(feature = "napi")]
mod binding;

pub use backend::{Backend, MockBackend};
pub use error::{Error, Result};
