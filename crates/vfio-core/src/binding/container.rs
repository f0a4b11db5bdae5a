//! A type1 container that owns its groups, and its DMA operations.

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::args::{map_batch_args, u64_of, unmap_batch_args};
use super::device::Device;
use super::error::{bad_arg, js_err};
use crate::batch::{as_triples, BatchFlags};

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

/// Where each run of `entries` (iova, vaddr, size triples with per-entry
/// `flags`) that one `mapBatch` would coalesce into a single
/// `VFIO_IOMMU_MAP_DMA` starts: vfio-core's one coalescing rule, for the
/// layers above that must predict it.
#[napi]
pub fn coalesce_runs(env: &Env, entries: BigUint64ArraySlice, flags: Uint32ArraySlice) -> Result<Uint32Array> {
    let Some(triples) = as_triples(&entries) else {
        return Err(js_err(env, bad_arg(format!("entries has {} values, not a multiple of 3 (iova, vaddr, size)", entries.len()))));
    };
    if flags.len() != triples.len() {
        return Err(js_err(env, bad_arg(format!("{} entries but {} flags", triples.len(), flags.len()))));
    }
    Ok(Uint32Array::new(crate::batch::run_starts(triples, BatchFlags::Each(&flags))))
}

/// What a [`Type1Container`] owns while it is open. Fields drop in
/// declaration order, which is the order the kernel wants them closed:
/// BAR mappings, then device fds (each holds its group), then the groups
/// (each detaches), then the container.
pub(super) struct Open {
    /// Each mapping with the slot of the device it maps.
    pub(super) regions: Slab<(u64, crate::MappedRegion)>,
    pub(super) devices: Slab<crate::Device>,
    pub(super) t1: crate::Type1Container,
}

/// Numbered slots; a handle keeps its number, so a closed slot is a clear
/// error and never someone else's object.
pub(super) struct Slab<T> {
    next: u64,
    items: std::collections::BTreeMap<u64, T>,
}

impl<T> Slab<T> {
    fn new() -> Self {
        Self { next: 0, items: Default::default() }
    }
    pub(super) fn insert(&mut self, v: T) -> u64 {
        let k = self.next;
        self.next += 1;
        self.items.insert(k, v);
        k
    }
    pub(super) fn get(&self, k: u64) -> Option<&T> {
        self.items.get(&k)
    }
    pub(super) fn remove(&mut self, k: u64) -> Option<T> {
        self.items.remove(&k)
    }
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.items.values()
    }
    pub(super) fn remove_where(&mut self, mut f: impl FnMut(&T) -> bool) -> Vec<T> {
        let keys: Vec<u64> = self.items.iter().filter(|(_, v)| f(v)).map(|(&k, _)| k).collect();
        keys.into_iter().filter_map(|k| self.items.remove(&k)).collect()
    }
}

/// The state a container's JS handles share: the container itself and
/// every device and mapping opened from it. The container's JS object and
/// each device's hold an `Arc`, so the last one collected closes it all;
/// `close()` closes it at once and every handle answers EBADF after.
pub(super) struct Shared {
    open: Mutex<Option<Open>>,
    pub(super) object: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Open>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the open state; EBADF naming `object` when the
    /// container was closed (the kernel's answer for an fd that is gone).
    pub(super) fn with<R>(&self, ioctl: &'static str, object: &str, f: impl FnOnce(&mut Open) -> crate::Result<R>) -> crate::Result<R> {
        match self.lock().as_mut() {
            Some(o) => f(o),
            None => Err(closed(ioctl, object)),
        }
    }

    /// Takes everything out under the lock and drops it outside.
    pub(super) fn close(&self) {
        let taken = self.lock().take();
        drop(taken);
    }

    pub(super) fn is_open(&self) -> bool {
        self.lock().is_some()
    }
}

/// The error for a call on something already closed.
pub(super) fn closed(ioctl: &'static str, object: &str) -> crate::Error {
    crate::Error::new(libc::EBADF, ioctl, format!("{object} (closed)"))
        .with_detail("it was closed by close(), or its container was; open a new one with VfioHost.openType1")
}

/// A type1 container with its groups attached and its IOMMU set, opened
/// by `VfioBackend.openType1`. It cannot exist without its groups, so its
/// mappings last exactly as long as it does.
#[napi]
pub struct Type1Container {
    pub(super) shared: Arc<Shared>,
    group_ids: Vec<u32>,
    backend_kind: String,
}

impl Type1Container {
    pub(super) fn new(t1: crate::Type1Container) -> Self {
        let object = t1.object();
        let group_ids = t1.group_ids();
        let backend_kind = t1.backend_kind().to_string();
        let open = Open { regions: Slab::new(), devices: Slab::new(), t1 };
        Self { shared: Arc::new(Shared { open: Mutex::new(Some(open)), object }), group_ids, backend_kind }
    }

    /// Another JS handle on the same container (it shares the state).
    pub(super) fn handle(&self) -> Self {
        Self { shared: self.shared.clone(), group_ids: self.group_ids.clone(), backend_kind: self.backend_kind.clone() }
    }

    /// Puts devices received in a live hand-over in the container's table;
    /// one handle each.
    pub(super) fn adopt_devices(&self, devices: Vec<crate::Device>) -> Vec<Device> {
        let slots = self
            .shared
            .with("adopt", &self.shared.object, |o| Ok(devices.into_iter().map(|d| (d.name().to_string(), o.devices.insert(d))).collect::<Vec<_>>()))
            .unwrap_or_default();
        slots.into_iter().map(|(name, id)| Device::new(self.shared.clone(), id, name)).collect()
    }

    fn with<R>(&self, env: &Env, ioctl: &'static str, f: impl FnOnce(&crate::Type1Container) -> crate::Result<R>) -> Result<R> {
        self.shared.with(ioctl, &self.shared.object, |o| f(&o.t1)).map_err(|e| js_err(env, e))
    }
}

#[napi]
impl Type1Container {
    /// "kernel" or "mock".
    #[napi(getter)]
    pub fn backend_kind(&self) -> String {
        self.backend_kind.clone()
    }

    /// The IOMMU groups this container holds, in attach order.
    #[napi(getter)]
    pub fn groups(&self) -> Vec<u32> {
        self.group_ids.clone()
    }

    /// False once closed.
    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        self.shared.is_open()
    }

    /// Closes mappings, devices, groups and the container, in that order.
    /// Idempotent; every handle from this container answers EBADF after.
    #[napi]
    pub fn close(&self) {
        self.shared.close();
    }

    /// `VFIO_GROUP_GET_DEVICE_FD` for `name` on whichever group holds it.
    #[napi]
    pub fn device(&self, env: &Env, name: String) -> Result<Device> {
        let id = self
            .shared
            .with("VFIO_GROUP_GET_DEVICE_FD", &self.shared.object, |o| {
                let d = o.t1.device(&name)?;
                Ok(o.devices.insert(d))
            })
            .map_err(|e| js_err(env, e))?;
        Ok(Device::new(self.shared.clone(), id, name))
    }

    /// `VFIO_CHECK_EXTENSION` for an IOMMU type or feature number (the
    /// IOMMU is set, so only its driver answers).
    #[napi]
    pub fn check_extension(&self, env: &Env, extension: u32) -> Result<bool> {
        self.with(env, "VFIO_CHECK_EXTENSION", |c| c.check_extension(extension))
    }

    /// `VFIO_IOMMU_GET_INFO` with its capabilities.
    #[napi]
    pub fn iommu_info(&self, env: &Env) -> Result<IommuInfoJs> {
        let i = self.with(env, "VFIO_IOMMU_GET_INFO", |c| c.iommu_info())?;
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

    /// `VFIO_IOMMU_MAP_DMA` of one range; `flags` (DmaFlags) default to read and write.
    #[napi]
    pub fn map_dma(&self, env: &Env, iova: BigInt, vaddr: BigInt, size: BigInt, flags: Option<u32>) -> Result<()> {
        self.with(env, "VFIO_IOMMU_MAP_DMA", |c| {
            c.map_dma(u64_of("iova", &iova)?, u64_of("vaddr", &vaddr)?, u64_of("size", &size)?, flags.unwrap_or(crate::dma_flags::READ_WRITE))
        })
    }

    /// `VFIO_IOMMU_UNMAP_DMA`: returns the bytes unmapped.
    #[napi]
    pub fn unmap_dma(&self, env: &Env, iova: BigInt, size: BigInt) -> Result<BigInt> {
        self.with(env, "VFIO_IOMMU_UNMAP_DMA", |c| c.unmap_dma(u64_of("iova", &iova)?, u64_of("size", &size)?)).map(BigInt::from)
    }

    /// `VFIO_IOMMU_UNMAP_DMA` with `VFIO_DMA_UNMAP_FLAG_ALL`.
    #[napi]
    pub fn unmap_all(&self, env: &Env) -> Result<BigInt> {
        self.with(env, "VFIO_IOMMU_UNMAP_DMA", |c| c.unmap_all()).map(BigInt::from)
    }

    /// Live update: the mappings in range keep working but their host
    /// addresses become invalid until `updateVaddr` (`VFIO_DMA_UNMAP_FLAG_VADDR`).
    #[napi]
    pub fn invalidate_vaddr(&self, env: &Env, iova: BigInt, size: BigInt) -> Result<BigInt> {
        self.with(env, "VFIO_IOMMU_UNMAP_DMA", |c| c.invalidate_vaddr(u64_of("iova", &iova)?, u64_of("size", &size)?))
            .map(BigInt::from)
    }

    /// Live update: the new host address of an invalidated mapping (`VFIO_DMA_MAP_FLAG_VADDR`).
    #[napi]
    pub fn update_vaddr(&self, env: &Env, iova: BigInt, vaddr: BigInt, size: BigInt) -> Result<()> {
        self.with(env, "VFIO_IOMMU_MAP_DMA", |c| {
            c.update_vaddr(u64_of("iova", &iova)?, u64_of("vaddr", &vaddr)?, u64_of("size", &size)?)
        })
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` START.
    #[napi]
    pub fn start_dirty_tracking(&self, env: &Env) -> Result<()> {
        self.with(env, "VFIO_IOMMU_DIRTY_PAGES", |c| c.start_dirty_tracking())
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` STOP.
    #[napi]
    pub fn stop_dirty_tracking(&self, env: &Env) -> Result<()> {
        self.with(env, "VFIO_IOMMU_DIRTY_PAGES", |c| c.stop_dirty_tracking())
    }

    /// `VFIO_IOMMU_DIRTY_PAGES` GET_BITMAP: one bit per page of `pageSize`
    /// over [iova, iova + size) (4 KiB pages unless `pageSize` says otherwise).
    #[napi]
    pub fn dirty_bitmap(&self, env: &Env, iova: BigInt, size: BigInt, page_size: Option<BigInt>) -> Result<BigUint64Array> {
        self.with(env, "VFIO_IOMMU_DIRTY_PAGES", |c| {
            let page = page_size.as_ref().map(|p| u64_of("pageSize", p)).transpose()?.unwrap_or(0x1000);
            c.dirty_bitmap(u64_of("iova", &iova)?, u64_of("size", &size)?, page)
        })
        .map(BigUint64Array::new)
    }

    /// Maps a batch: `entries` holds iova, vaddr, size triples; `flags` one
    /// word per entry or one number for all (read and write when omitted). All or nothing: on failure the
    /// error's `entryIndex` names the entry and nothing stays mapped.
    #[napi]
    pub fn map_batch(&self, env: &Env, entries: BigUint64ArraySlice, flags: Option<Either<u32, Uint32ArraySlice>>) -> Result<BatchReportJs> {
        let (triples, f) = map_batch_args(&entries, &flags).map_err(|e| js_err(env, e))?;
        self.with(env, "VFIO_IOMMU_MAP_DMA", |c| c.map_batch(triples, f)).map(Into::into)
    }

    /// Unmaps a batch of iova, size pairs, coalescing contiguous ones.
    #[napi]
    pub fn unmap_batch(&self, env: &Env, entries: BigUint64ArraySlice) -> Result<BatchReportJs> {
        let pairs = unmap_batch_args(&entries).map_err(|e| js_err(env, e))?;
        self.with(env, "VFIO_IOMMU_UNMAP_DMA", |c| c.unmap_batch(pairs)).map(Into::into)
    }
}
