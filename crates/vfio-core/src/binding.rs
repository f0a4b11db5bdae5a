//! The Node face of vfio-core. All napi types live here and nowhere else.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::backend::{Backend, MockBackend, MockConfig};

fn to_js(e: crate::Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {}", e.code(), e))
}

/// A VFIO container opened on a backend: the kernel's /dev/vfio/vfio or the mock.
#[napi]
pub struct Container {
    inner: crate::Container,
}

#[napi]
impl Container {
    /// Open a container on a fresh in-process mock of the kernel.
    #[napi(factory)]
    pub fn open_mock() -> Result<Self> {
        let backend: Arc<dyn Backend> = Arc::new(MockBackend::new(MockConfig::default()));
        Ok(Self { inner: crate::Container::open(backend).map_err(to_js)? })
    }

    /// `VFIO_GET_API_VERSION`.
    #[napi]
    pub fn api_version(&self) -> Result<i32> {
        self.inner.api_version().map_err(to_js)
    }

    /// `VFIO_CHECK_EXTENSION` for an IOMMU type or feature number.
    #[napi]
    pub fn check_extension(&self, extension: u32) -> Result<bool> {
        self.inner.check_extension(extension).map_err(to_js)
    }
}
