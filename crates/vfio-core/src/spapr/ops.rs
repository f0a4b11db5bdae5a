//! The raw sPAPR TCE calls, one method per ioctl, as a backend answers them.
//! `KernelSpapr` issues them on a container fd; `MockSpapr` models
//! `tce_iommu_ioctl` (drivers/vfio/vfio_iommu_spapr_tce.c). Nothing here
//! checks anything: the safety rules live in [`super::TceContainer`].

use crate::error::Result;
use crate::uapi::spapr as u;

/// `VFIO_DMA_MAP_FLAG_*` as a direction: what the device may do to memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DmaDirection {
    /// The device reads memory (TCE read bit only).
    ToDevice,
    /// The device writes memory (TCE write bit only).
    FromDevice,
    Bidirectional,
}

impl DmaDirection {
    pub fn flags(self) -> u32 {
        match self {
            DmaDirection::ToDevice => u::VFIO_DMA_MAP_FLAG_READ,
            DmaDirection::FromDevice => u::VFIO_DMA_MAP_FLAG_WRITE,
            DmaDirection::Bidirectional => u::VFIO_DMA_MAP_FLAG_READ | u::VFIO_DMA_MAP_FLAG_WRITE,
        }
    }
}

/// One sPAPR TCE container as a backend sees it. Arguments are passed through
/// unchanged, including invalid ones, so that a conformance run can hold the
/// mock to the kernel errno by errno.
pub trait SpaprOps {
    /// `VFIO_IOMMU_SPAPR_TCE_GET_INFO` with the given `argsz`; the kernel
    /// copies back the ddw part only when `argsz` covers it.
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info>;
    /// `VFIO_IOMMU_ENABLE` (v1 only).
    fn enable(&mut self) -> Result<()>;
    /// `VFIO_IOMMU_DISABLE` (v1 only).
    fn disable(&mut self) -> Result<()>;
    /// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY` (v2 only).
    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()>;
    /// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY` (v2 only).
    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()>;
    /// `VFIO_IOMMU_SPAPR_TCE_CREATE` (v2 only): returns the window's bus address.
    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64>;
    /// `VFIO_IOMMU_SPAPR_TCE_REMOVE` (v2 only).
    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()>;
    /// `VFIO_IOMMU_MAP_DMA` into whichever window holds `iova`. Returns the
    /// ioctl's value: 0, or 1 when `iommu_tce_put_param_check` rejected the
    /// IOVA (the driver returns that check's boolean as is, so the call
    /// "succeeds" with 1 and maps nothing).
    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32>;
    /// `VFIO_IOMMU_UNMAP_DMA`. The sPAPR driver does not write the size back;
    /// like map it returns 1 when `iommu_tce_clear_param_check` fails.
    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32>;
    /// `VFIO_EEH_PE_OP` on every group of the container; returns the ioctl's
    /// value (the PE state for `VFIO_EEH_PE_GET_STATE`).
    fn eeh_pe_op(&mut self, op: u32) -> Result<i32>;
}

/// A borrowed or boxed backend is a backend: lets a [`super::TceContainer`]
/// drive one its caller keeps (`TceContainer<&mut dyn SpaprOps>`) or the
/// box [`super::ops_for`] returns.
macro_rules! forward_spapr_ops {
    ($($ty:ty),*) => {$(
impl<T: SpaprOps + ?Sized> SpaprOps for $ty {
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
        (**self).tce_get_info(argsz)
    }
    fn enable(&mut self) -> Result<()> {
        (**self).enable()
    }
    fn disable(&mut self) -> Result<()> {
        (**self).disable()
    }
    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        (**self).register_memory(vaddr, size, flags)
    }
    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        (**self).unregister_memory(vaddr, size, flags)
    }
    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
        (**self).tce_create(page_shift, window_size, levels, flags)
    }
    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
        (**self).tce_remove(start_addr, flags)
    }
    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
        (**self).map_dma(iova, vaddr, size, flags)
    }
    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
        (**self).unmap_dma(iova, size, flags)
    }
    fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        (**self).eeh_pe_op(op)
    }
}
    )*};
}

forward_spapr_ops!(&mut T, Box<T>);
