//! The IOMMU driver seam of the mock (`struct vfio_iommu_driver_ops` in
//! drivers/vfio/vfio.h): a container's IOMMU is an [`IommuOps`] opened by
//! a registered [`IommuDriverOps`].

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use super::super::{Errno, SysResult};
use super::config::{IovaSpan, MockConfig};
use super::pin::MockMm;
use crate::uapi::{vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap};

/// A registered IOMMU driver (the kernel's `vfio_iommu_drivers_list` entry).
pub trait IommuDriverOps: Send + Sync {
    fn name(&self) -> &'static str;
    /// `ops->ioctl(NULL, VFIO_CHECK_EXTENSION, arg)`: asked before SET_IOMMU.
    fn check_extension(&self, config: &MockConfig, extension: u32) -> i32;
    /// `ops->open(arg)`: a fresh IOMMU for a container, pinning into the
    /// host's `mm` (the opening process's, whose locked_vm it charges).
    fn open(&self, config: &MockConfig, mm: &Arc<MockMm>, extension: u32) -> SysResult<Box<dyn IommuOps>>;
}

/// A group as an IOMMU driver's attach_group sees it.
#[derive(Debug, Clone)]
pub struct AttachGroup {
    pub id: u32,
    pub reserved: Vec<IovaSpan>,
}

/// One container's IOMMU (`container->iommu_data` with its driver's ops).
/// Ioctls the driver does not implement answer ENOTTY, as
/// `vfio_iommu_type1_ioctl` does for unknown commands.
pub trait IommuOps: Send + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// `ops->ioctl(data, VFIO_CHECK_EXTENSION, arg)` once set.
    fn check_extension(&self, extension: u32) -> i32;
    /// `ops->attach_group`.
    fn attach_group(&mut self, group: &AttachGroup) -> SysResult<()>;
    /// `ops->detach_group`.
    fn detach_group(&mut self, group: u32);
    /// `VFIO_IOMMU_GET_INFO` (same number as SPAPR_TCE_GET_INFO).
    fn get_info(&mut self, _buf: &mut [u64]) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    fn map_dma(&mut self, _map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    fn unmap_dma(&mut self, _unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    /// `VFIO_IOMMU_DIRTY_PAGES`.
    fn dirty_pages(&mut self, _buf: &[u64]) -> SysResult<()> {
        Err(Errno(libc::ENOTTY))
    }
    /// What the IOMMU hardware does for a device access: the host address
    /// `iova` translates to and how many bytes after it stay in the same
    /// mapping, if the mapping allows `write` (or read).
    fn translate(&self, iova: u64, write: bool) -> Option<(u64, u64)>;
}
