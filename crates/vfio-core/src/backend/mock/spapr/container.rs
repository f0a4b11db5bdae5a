//! A mock container's sPAPR operations, reached through its backend.

use super::{err, MockSpapr};
use crate::backend::{Errno, MockBackend, RawFd};
use crate::error::Result;
use crate::spapr::SpaprOps;
use crate::uapi::spapr as u;

/// [`SpaprOps`] on a [`MockBackend`] container whose IOMMU is sPAPR: what
/// [`crate::spapr::ops_for`] returns for a mock container.
pub struct MockContainerSpapr<'a> {
    backend: &'a MockBackend,
    fd: RawFd,
}

impl<'a> MockContainerSpapr<'a> {
    pub fn new(backend: &'a MockBackend, fd: RawFd) -> Self {
        Self { backend, fd }
    }

    /// Runs `f` on the container's [`MockSpapr`]. As on the kernel: EINVAL
    /// before `VFIO_SET_IOMMU` (vfio_fops_unl_ioctl), ENOTTY when the IOMMU is
    /// not sPAPR (type1 does not know these commands).
    fn with<R>(&self, ioctl: &'static str, f: impl FnOnce(&mut MockSpapr) -> Result<R>) -> Result<R> {
        let r = self.backend.with_iommu(self.fd, |iommu| match iommu.as_any_mut().downcast_mut::<MockSpapr>() {
            Some(s) => f(s),
            None => Err(err(libc::ENOTTY, ioctl)),
        });
        match r {
            Ok(inner) => inner,
            Err(Errno(e)) => Err(err(e, ioctl)),
        }
    }
}

impl SpaprOps for MockContainerSpapr<'_> {
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
        self.with("VFIO_IOMMU_SPAPR_TCE_GET_INFO", |s| s.tce_get_info(argsz))
    }
    fn enable(&mut self) -> Result<()> {
        self.with("VFIO_IOMMU_ENABLE", |s| s.enable())
    }
    fn disable(&mut self) -> Result<()> {
        self.with("VFIO_IOMMU_DISABLE", |s| s.disable())
    }
    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.with("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", |s| s.register_memory(vaddr, size, flags))
    }
    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.with("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", |s| s.unregister_memory(vaddr, size, flags))
    }
    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
        self.with("VFIO_IOMMU_SPAPR_TCE_CREATE", |s| s.tce_create(page_shift, window_size, levels, flags))
    }
    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
        self.with("VFIO_IOMMU_SPAPR_TCE_REMOVE", |s| s.tce_remove(start_addr, flags))
    }
    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
        self.with("VFIO_IOMMU_MAP_DMA", |s| SpaprOps::map_dma(s, iova, vaddr, size, flags))
    }
    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
        self.with("VFIO_IOMMU_UNMAP_DMA", |s| SpaprOps::unmap_dma(s, iova, size, flags))
    }
    fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        self.with("VFIO_EEH_PE_OP", |s| s.eeh_pe_op(op))
    }
}
