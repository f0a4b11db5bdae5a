//! sPAPR TCE containers (POWER).

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::args::u64_of;
use super::error::{bad_arg, js_err};
use super::host::VfioBackend;
use crate::spapr::{self as tce, DmaDirection, PeContainer, TceVersion};

/// A DMA window of a PE.
#[napi(object, js_name = "TceWindow")]
pub struct TceWindowJs {
    pub start: BigInt,
    pub size: BigInt,
    pub page_shift: u32,
}

impl From<tce::Window> for TceWindowJs {
    fn from(w: tce::Window) -> Self {
        Self { start: BigInt::from(w.start), size: BigInt::from(w.size), page_shift: w.page_shift }
    }
}

/// Dynamic DMA windows as a v2 container reports them.
#[napi(object, js_name = "DdwInfo")]
pub struct DdwInfoJs {
    pub page_sizes: BigInt,
    pub max_windows: u32,
    pub levels: u32,
}

/// `VFIO_IOMMU_SPAPR_TCE_GET_INFO` in plain terms.
#[napi(object, js_name = "TceInfo")]
pub struct TceInfoJs {
    pub dma32_start: BigInt,
    pub dma32_size: BigInt,
    pub ddw: Option<DdwInfoJs>,
}

/// The sPAPR TCE container of one PE (vfio-core's `spapr::TceContainer`):
/// every call is checked in user space before its ioctl (a map wholly inside
/// one window, unmap before unregister, one PE per container), on the kernel
/// or on a mock host opened with `spapr: true`.
#[napi]
pub struct TceContainer {
    pub(super) inner: tce::TceContainer<PeContainer>,
}

fn direction_of(flags: u32) -> std::result::Result<DmaDirection, crate::Error> {
    match flags {
        1 => Ok(DmaDirection::ToDevice),
        2 => Ok(DmaDirection::FromDevice),
        3 => Ok(DmaDirection::Bidirectional),
        _ => Err(bad_arg(format!("flags {flags:#x}: READ (1), WRITE (2) or both, nothing else"))),
    }
}

#[napi]
impl TceContainer {
    /// Opens a container for group `group` on `backend`, attaches it and sets
    /// `VFIO_SPAPR_TCE_v2_IOMMU` (or v1 when `v2` is false).
    #[napi(factory)]
    pub fn open(env: &Env, backend: &VfioBackend, group: u32, v2: Option<bool>) -> Result<Self> {
        let version = if v2.unwrap_or(true) { TceVersion::V2 } else { TceVersion::V1 };
        let inner = tce::TceContainer::open(backend.inner.clone(), group, version).map_err(|e| js_err(env, e))?;
        Ok(Self { inner })
    }

    #[napi(getter)]
    pub fn group(&self) -> u32 {
        self.inner.group()
    }

    #[napi]
    pub fn info(&self) -> TceInfoJs {
        let i = self.inner.info();
        TceInfoJs {
            dma32_start: BigInt::from(i.dma32_start),
            dma32_size: BigInt::from(i.dma32_size),
            ddw: i.ddw.map(|d| DdwInfoJs { page_sizes: BigInt::from(d.page_sizes), max_windows: d.max_windows, levels: d.levels }),
        }
    }

    /// The windows that exist (the default one included).
    #[napi]
    pub fn windows(&self) -> Vec<TceWindowJs> {
        self.inner.windows().iter().map(|&w| w.into()).collect()
    }

    /// `VFIO_IOMMU_SPAPR_TCE_CREATE` with QEMU's levels retry; the platform picks the start.
    #[napi]
    pub fn create_window(&mut self, env: &Env, page_shift: u32, size: BigInt) -> Result<TceWindowJs> {
        let r = (|| self.inner.create_window(page_shift, u64_of("size", &size)?))();
        r.map(Into::into).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn remove_window(&mut self, env: &Env, start: BigInt) -> Result<()> {
        let r = (|| self.inner.remove_window(u64_of("start", &start)?))();
        r.map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY` (v2).
    #[napi]
    pub fn register(&mut self, env: &Env, vaddr: BigInt, size: BigInt) -> Result<()> {
        let r = (|| self.inner.register(u64_of("vaddr", &vaddr)?, u64_of("size", &size)?))();
        r.map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY`, refused while any of it is mapped.
    #[napi]
    pub fn unregister(&mut self, env: &Env, vaddr: BigInt, size: BigInt) -> Result<()> {
        let r = (|| self.inner.unregister(u64_of("vaddr", &vaddr)?, u64_of("size", &size)?))();
        r.map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_MAP_DMA` into one window; `flags` is READ (1) | WRITE (2), both when omitted.
    #[napi]
    pub fn map(&mut self, env: &Env, iova: BigInt, vaddr: BigInt, size: BigInt, flags: Option<u32>) -> Result<()> {
        let r = (|| {
            let dir = direction_of(flags.unwrap_or(crate::dma_flags::READ_WRITE))?;
            self.inner.map(u64_of("iova", &iova)?, u64_of("vaddr", &vaddr)?, u64_of("size", &size)?, dir)
        })();
        r.map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn unmap(&mut self, env: &Env, iova: BigInt, size: BigInt) -> Result<()> {
        let r = (|| self.inner.unmap(u64_of("iova", &iova)?, u64_of("size", &size)?))();
        r.map_err(|e| js_err(env, e))
    }

    /// `VFIO_EEH_PE_OP`; ENODEV where the PE has no EEH (every pseries TCG guest).
    #[napi]
    pub fn eeh_pe_op(&mut self, env: &Env, op: u32) -> Result<i32> {
        self.inner.eeh_pe_op(op).map_err(|e| js_err(env, e))
    }

    /// Unmaps everything, then unregisters everything (the order the kernel needs).
    #[napi]
    pub fn release(&mut self, env: &Env) -> Result<()> {
        self.inner.release().map_err(|e| js_err(env, e))
    }
}
