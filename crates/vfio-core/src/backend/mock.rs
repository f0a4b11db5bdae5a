//! An in-process model of the kernel's VFIO container. Each rule cites the
//! kernel function it mirrors.

use super::Backend;
use crate::error::Result;
use crate::uapi;

#[derive(Debug, Default)]
pub struct MockBackend {}

impl MockBackend {
    pub fn new() -> Self {
        Self {}
    }
}

impl Backend for MockBackend {
    // vfio_fops_unl_ioctl: VFIO_GET_API_VERSION always answers VFIO_API_VERSION.
    fn api_version(&self) -> Result<i32> {
        Ok(uapi::VFIO_API_VERSION)
    }

    // vfio_ioctl_check_extension -> vfio_iommu_type1_check_extension on an x86
    // host with vfio_iommu_type1 loaded: type1, type1v2, DMA_CC (when the
    // IOMMU enforces coherency), UNMAP_ALL and UPDATE_VADDR.
    fn check_extension(&self, extension: u32) -> Result<bool> {
        Ok(matches!(
            extension,
            uapi::VFIO_TYPE1_IOMMU
                | uapi::VFIO_TYPE1V2_IOMMU
                | uapi::VFIO_DMA_CC_IOMMU
                | uapi::VFIO_UNMAP_ALL
                | uapi::VFIO_UPDATE_VADDR
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_version_is_zero() {
        assert_eq!(MockBackend::new().api_version().unwrap(), 0);
    }

    #[test]
    fn type1_and_type1v2_are_offered_and_spapr_is_not() {
        let b = MockBackend::new();
        assert!(b.check_extension(uapi::VFIO_TYPE1_IOMMU).unwrap());
        assert!(b.check_extension(uapi::VFIO_TYPE1V2_IOMMU).unwrap());
        assert!(!b.check_extension(uapi::VFIO_SPAPR_TCE_V2_IOMMU).unwrap());
    }
}
