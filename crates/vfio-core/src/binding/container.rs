//! A type1 container and its DMA operations.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::args::u64_of;
use super::error::{bad_arg, js_err};
use crate::backend::{self, MockBackend, MockConfig};
use crate::batch::{as_pairs, as_triples, BatchFlags};

#[napi(object, js_name = "IovaRange")]
pub struct IovaRangeJs {
    pub start: BigInt,
    pub end: BigInt,
}

#[napi(object, js_name = "IommuInfo")]
pub struct IommuInfoJs {
    pub flags: u32,
    pub iova_pgsizes: BigInt,
    pub iova_ranges: Option<Vec<IovaRangeJs>>,
    pub dma_avail: Option<u32>,
    pub migration_pgsize_bitmap: Option<BigInt>,
}

#[napi(object, js_name = "BatchReport")]
pub struct BatchReportJs {
    pub entries: u32,
    pub ioctls: u32,
    pub bytes: BigInt,
}

impl From<crate::BatchReport> for BatchReportJs {
    fn from(r: crate::BatchReport) -> Self {
        Self { entries: r.entries as u32, ioctls: r.ioctls as u32, bytes: BigInt::from(r.bytes) }
    }
}

/// A VFIO container (/dev/vfio/vfio), on the kernel or on a mock host.
#[napi]
pub struct Container {
    pub(super) inner: crate::Container,
}

#[napi]
impl Container {
    /// A container on a fresh mock host with the default configuration.
    #[napi(factory)]
    pub fn open_mock(env: &Env) -> Result<Self> {
        let b: Arc<dyn backend::Backend> = Arc::new(MockBackend::new(MockConfig::default()));
        Ok(Self { inner: crate::Container::open(b).map_err(|e| js_err(env, e))? })
    }

    #[napi(getter)]
    pub fn backend_kind(&self) -> String {
        self.inner.backend_kind().to_string()
    }

    /// `VFIO_GET_API_VERSION`.
    #[napi]
    pub fn api_version(&self, env: &Env) -> Result<i32> {
        self.inner.api_version().map_err(|e| js_err(env, e))
    }

    /// `VFIO_CHECK_EXTENSION` for an IOMMU type or feature number.
    #[napi]
    pub fn check_extension(&self, env: &Env, extension: u32) -> Result<bool> {
        self.inner.check_extension(extension).map_err(|e| js_err(env, e))
    }

    /// `VFIO_SET_IOMMU`.
    #[napi]
    pub fn set_iommu(&self, env: &Env, iommu: u32) -> Result<()> {
        self.inner.set_iommu(iommu).map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_GET_INFO` with its capabilities.
    #[napi]
    pub fn iommu_info(&self, env: &Env) -> Result<IommuInfoJs> {
        let i = self.inner.iommu_info().map_err(|e| js_err(env, e))?;
        Ok(IommuInfoJs {
            flags: i.flags,
            iova_pgsizes: BigInt::from(i.iova_pgsizes),
            iova_ranges: i.iova_ranges.map(|r| {
                r.into_iter().map(|r| IovaRangeJs { start: BigInt::from(r.start), end: BigInt::from(r.end) }).collect()
            }),
            dma_avail: i.dma_avail,
            migration_pgsize_bitmap: i.migration.map(|m| BigInt::from(m.pgsize_bitmap)),
        })
    }

    /// `VFIO_IOMMU_MAP_DMA` of one range.
    #[napi]
    pub fn map_dma(&self, env: &Env, iova: BigInt, vaddr: BigInt, size: BigInt, flags: u32) -> Result<()> {
        let r = (|| {
            let (i, v, s) = (u64_of("iova", &iova)?, u64_of("vaddr", &vaddr)?, u64_of("size", &size)?);
            self.inner.map_dma(i, v, s, flags)
        })();
        r.map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: returns the bytes unmapped.
    #[napi]
    pub fn unmap_dma(&self, env: &Env, iova: BigInt, size: BigInt) -> Result<BigInt> {
        let r = (|| self.inner.unmap_dma(u64_of("iova", &iova)?, u64_of("size", &size)?))();
        r.map(BigInt::from).map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL`.
    #[napi]
    pub fn unmap_all(&self, env: &Env) -> Result<BigInt> {
        self.inner.unmap_all().map(BigInt::from).map_err(|e| js_err(env, e))
    }

    /// Live update: the mappings in range keep working but their host
    /// addresses become invalid until `updateVaddr` (`VFIO_DMA_UNMAP_FLAG_VADDR`).
    #[napi]
    pub fn invalidate_vaddr(&self, env: &Env, iova: BigInt, size: BigInt) -> Result<BigInt> {
        let r = (|| self.inner.invalidate_vaddr(u64_of("iova", &iova)?, u64_of("size", &size)?))();
        r.map(BigInt::from).map_err(|e| js_err(env, e))
    }

    /// Live update: the new host address of an invalidated mapping (`VFIO_DMA_MAP_FLAG_VADDR`).
    #[napi]
    pub fn update_vaddr(&self, env: &Env, iova: BigInt, vaddr: BigInt, size: BigInt) -> Result<()> {
        let r = (|| self.inner.update_vaddr(u64_of("iova", &iova)?, u64_of("vaddr", &vaddr)?, u64_of("size", &size)?))();
        r.map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` START.
    #[napi]
    pub fn start_dirty_tracking(&self, env: &Env) -> Result<()> {
        self.inner.start_dirty_tracking().map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` STOP.
    #[napi]
    pub fn stop_dirty_tracking(&self, env: &Env) -> Result<()> {
        self.inner.stop_dirty_tracking().map_err(|e| js_err(env, e))
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` GET_BITMAP: one bit per page of `pageSize`
    /// over [iova, iova + size).
    #[napi]
    pub fn dirty_bitmap(&self, env: &Env, iova: BigInt, size: BigInt, page_size: BigInt) -> Result<BigUint64Array> {
        let r = (|| self.inner.dirty_bitmap(u64_of("iova", &iova)?, u64_of("size", &size)?, u64_of("pageSize", &page_size)?))();
        r.map(BigUint64Array::new).map_err(|e| js_err(env, e))
    }

    /// Maps a batch: `entries` holds iova, vaddr, size triples; `flags` one
    /// word per entry or one number for all. All or nothing: on failure the
    /// error's `entryIndex` names the entry and nothing stays mapped.
    #[napi]
    pub fn map_batch(&self, env: &Env, entries: BigUint64ArraySlice, flags: Either<u32, Uint32ArraySlice>) -> Result<BatchReportJs> {
        let Some(triples) = as_triples(&entries) else {
            return Err(js_err(env, bad_arg(format!("entries has {} values, not a multiple of 3 (iova, vaddr, size)", entries.len()))));
        };
        let f = match &flags {
            Either::A(all) => BatchFlags::All(*all),
            Either::B(each) => BatchFlags::Each(each),
        };
        self.inner.map_batch(triples, f).map(Into::into).map_err(|e| js_err(env, e))
    }

    /// Unmaps a batch of iova, size pairs, coalescing contiguous ones.
    #[napi]
    pub fn unmap_batch(&self, env: &Env, entries: BigUint64ArraySlice) -> Result<BatchReportJs> {
        let Some(pairs) = as_pairs(&entries) else {
            return Err(js_err(env, bad_arg(format!("entries has {} values, not a multiple of 2 (iova, size)", entries.len()))));
        };
        self.inner.unmap_batch(pairs).map(Into::into).map_err(|e| js_err(env, e))
    }
}
