//! The backend seam: the code above it does not know whether it talks to the
//! kernel or to the mock.

mod mock;

pub use mock::MockBackend;

use crate::error::Result;

/// One VFIO container as a backend sees it.
pub trait Backend {
    /// `VFIO_GET_API_VERSION`.
    fn api_version(&self) -> Result<i32>;
    /// `VFIO_CHECK_EXTENSION`: whether an IOMMU type or feature is offered.
    fn check_extension(&self, extension: u32) -> Result<bool>;
}
