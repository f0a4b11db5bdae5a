//! The Node face of vfio-core. All napi types live here and nowhere else.

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::backend::{Backend, MockBackend};

fn to_js(e: crate::Error) -> napi::Error {
    napi::Error::new(Status::GenericFailure, format!("[{}] {}", e.code(), e))
}

/// A VFIO container opened on a backend: the kernel's /dev/vfio/vfio or the mock.
#[napi]
pub struct Container {
    backend: Box<dyn Backend>,
}

#[napi]
impl Container {
    /// Open a container on the in-process mock of the kernel.
    #[napi(factory)]
    pub fn open_mock() -> Self {
        Self { backend: Box::new(MockBackend::new()) }
    }

    /// `VFIO_GET_API_VERSION`.
    #[napi]
    pub fn api_version(&self) -> Result<i32> {
        self.backend.api_version().map_err(to_js)
    }

    /// `VFIO_CHECK_EXTENSION` for an IOMMU type or feature number.
    #[napi]
    pub fn check_extension(&self, extension: u32) -> Result<bool> {
        self.backend.check_extension(extension).map_err(to_js)
    }
}
