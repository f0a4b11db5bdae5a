//! Device cdevs bound to an iommufd and attached to one IOAS: the iommufd
//! counterpart of a type1 container (`VfioBackend.openIommufd`).

use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use super::args::{hand_over_mappings, map_batch_args, u64_of, unmap_batch_args};
use super::container::{BatchReportJs, IovaRangeJs};
use super::device::MappedRegion;
use super::error::{bad_arg, js_err};
use super::live::{GuestMemory, IommufdHandOverTask, LiveIrqJs};

/// IOMMU_IOAS_IOVA_RANGES: where the IOAS can map, and the alignment every
/// map keeps (the smallest IOMMU page once a device is attached).
#[napi(object, js_name = "IoasRanges")]
pub struct IoasRangesJs {
    pub ranges: Vec<IovaRangeJs>,
    pub alignment: BigInt,
}

/// IOMMU_GET_HW_INFO for one device: what its IOMMU is and can do.
#[napi(object, js_name = "IommuHwInfo")]
pub struct HwInfoJs {
    /// IOMMU_HW_INFO_TYPE_* (0 none, 1 Intel VT-d; later kernels add others).
    pub data_type: u32,
    /// IOMMU_HW_CAP_* bits.
    pub capabilities: BigInt,
    /// IOMMU_HW_CAP_DIRTY_TRACKING: the IOMMU records which pages the
    /// device wrote (what a live migration needs from it). QEMU's emulated
    /// IOMMUs have none.
    pub dirty_tracking: bool,
    pub max_pasid_log2: u32,
}

/// One iommufd with an IOAS and the devices attached to it. `close()` (or
/// collection) closes the device cdevs, then the IOAS, then /dev/iommu.
#[napi]
pub struct IommufdSpace {
    /// Shared by every handle of this space (`IommufdTakenOver.space`) and
    /// by a hand-over running on libuv's pool.
    open: Arc<Mutex<Option<crate::IommufdSpace>>>,
    object: String,
    cdevs: Vec<u32>,
    hwpts: Vec<u32>,
    ioas_id: u32,
    backend_kind: String,
}

impl IommufdSpace {
    pub(super) fn new(s: crate::IommufdSpace) -> Self {
        Self {
            object: s.object(),
            cdevs: s.devices().iter().map(|d| d.index()).collect(),
            hwpts: s.hwpts().to_vec(),
            ioas_id: s.ioas().id(),
            backend_kind: s.iommufd().backend_kind().to_string(),
            open: Arc::new(Mutex::new(Some(s))),
        }
    }

    /// Another handle of the same open space.
    pub(super) fn handle(&self) -> Self {
        Self {
            open: self.open.clone(),
            object: self.object.clone(),
            cdevs: self.cdevs.clone(),
            hwpts: self.hwpts.clone(),
            ioas_id: self.ioas_id,
            backend_kind: self.backend_kind.clone(),
        }
    }

    fn with<R>(&self, env: &Env, ioctl: &'static str, f: impl FnOnce(&crate::IommufdSpace) -> crate::Result<R>) -> Result<R> {
        let guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(s) => f(s).map_err(|e| js_err(env, e)),
            None => Err(js_err(env, closed(ioctl, &self.object))),
        }
    }
}

pub(super) fn closed(ioctl: &'static str, object: &str) -> crate::Error {
    crate::Error::new(libc::EBADF, ioctl, format!("{object} (closed)"))
        .with_detail("it was closed by close(); open a new one with VfioHost.openIommufd")
}

#[napi]
impl IommufdSpace {
    /// "kernel" or "mock".
    #[napi(getter)]
    pub fn backend_kind(&self) -> String {
        self.backend_kind.clone()
    }

    /// The cdev numbers (N of /dev/vfio/devices/vfioN) attached, in order.
    #[napi(getter)]
    pub fn cdevs(&self) -> Vec<u32> {
        self.cdevs.clone()
    }

    /// The HWPT each device was attached to.
    #[napi(getter)]
    pub fn hwpts(&self) -> Vec<u32> {
        self.hwpts.clone()
    }

    #[napi(getter)]
    pub fn ioas_id(&self) -> u32 {
        self.ioas_id
    }

    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Closes the devices, the IOAS and the iommufd; idempotent.
    #[napi]
    pub fn close(&self) {
        let taken = self.open.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(taken);
    }

    #[napi]
    pub fn iova_ranges(&self, env: &Env) -> Result<IoasRangesJs> {
        let r = self.with(env, "IOMMU_IOAS_IOVA_RANGES", |s| s.ioas().iova_ranges())?;
        Ok(IoasRangesJs {
            ranges: r.ranges.into_iter().map(|r| IovaRangeJs { start: BigInt::from(r.start), end: BigInt::from(r.end) }).collect(),
            alignment: BigInt::from(r.alignment),
        })
    }

    /// IOMMU_IOAS_MAP at `iova` (null: the kernel chooses); returns the IOVA.
    /// `flags` are DmaFlags (Read, Write; both when omitted).
    #[napi]
    pub fn map_dma(&self, env: &Env, iova: Option<BigInt>, vaddr: BigInt, size: BigInt, flags: Option<u32>) -> Result<BigInt> {
        self.with(env, "IOMMU_IOAS_MAP", |s| {
            let iova = iova.as_ref().map(|i| u64_of("iova", i)).transpose()?;
            s.ioas().map(iova, u64_of("vaddr", &vaddr)?, u64_of("size", &size)?, flags.unwrap_or(crate::dma_flags::READ_WRITE))
        })
        .map(BigInt::from)
    }

    /// IOMMU_IOAS_UNMAP of whole mappings: returns the bytes unmapped.
    #[napi]
    pub fn unmap_dma(&self, env: &Env, iova: BigInt, size: BigInt) -> Result<BigInt> {
        self.with(env, "IOMMU_IOAS_UNMAP", |s| s.ioas().unmap(u64_of("iova", &iova)?, u64_of("size", &size)?)).map(BigInt::from)
    }

    #[napi]
    pub fn unmap_all(&self, env: &Env) -> Result<BigInt> {
        self.with(env, "IOMMU_IOAS_UNMAP", |s| s.ioas().unmap_all()).map(BigInt::from)
    }

    /// As Type1Container.mapBatch: iova, vaddr, size triples, all or nothing.
    #[napi]
    pub fn map_batch(&self, env: &Env, entries: BigUint64ArraySlice, flags: Option<Either<u32, Uint32ArraySlice>>) -> Result<BatchReportJs> {
        let (triples, f) = map_batch_args(&entries, &flags).map_err(|e| js_err(env, e))?;
        self.with(env, "IOMMU_IOAS_MAP", |s| s.ioas().map_batch(triples, f)).map(Into::into)
    }

    /// IOMMU_GET_HW_INFO for the device of cdev `cdev` (one of `cdevs`).
    #[napi]
    pub fn hw_info(&self, env: &Env, cdev: u32) -> Result<HwInfoJs> {
        let i = self.with(env, "IOMMU_GET_HW_INFO", |s| {
            let d = s.device(cdev).ok_or_else(|| {
                crate::Error::new(libc::ENOENT, "IOMMU_GET_HW_INFO", s.object())
                    .with_detail(format!("vfio{cdev} is not in this space; its cdevs are {:?}", self.cdevs))
            })?;
            // A device taken over in a live hand-over: the old process's
            // bind gave the id, and the description does not carry it.
            let dev_id = d.dev_id().ok_or_else(|| {
                crate::Error::new(libc::ENOENT, "IOMMU_GET_HW_INFO", s.object())
                    .with_detail(format!("vfio{cdev} was taken over from another process, which knows its iommufd device id; ask it there"))
            })?;
            s.iommufd().hw_info(dev_id)
        })?;
        Ok(HwInfoJs {
            data_type: i.data_type,
            capabilities: BigInt::from(i.capabilities),
            dirty_tracking: i.dirty_tracking(),
            max_pasid_log2: i.max_pasid_log2 as u32,
        })
    }

    /// As Type1Container.unmapBatch: iova, size pairs.
    #[napi]
    pub fn unmap_batch(&self, env: &Env, entries: BigUint64ArraySlice) -> Result<BatchReportJs> {
        let pairs = unmap_batch_args(&entries).map_err(|e| js_err(env, e))?;
        self.with(env, "IOMMU_IOAS_UNMAP", |s| s.ioas().unmap_batch(pairs)).map(Into::into)
    }

    /// IOMMU_IOAS_MAP_FILE (Linux 6.13): `size` bytes of `memory`'s memfd
    /// from byte `offset`, at `iova` (null: the kernel chooses); returns the
    /// IOVA. The IOMMU holds the file's pages, not this process's addresses,
    /// which is what lets `handOver` move the mapping to another process.
    /// Before 6.13: ENOTTY.
    #[napi]
    pub fn map_file(&self, env: &Env, iova: Option<BigInt>, memory: &GuestMemory, offset: BigInt, size: BigInt, flags: Option<u32>) -> Result<BigInt> {
        self.with(env, "IOMMU_IOAS_MAP_FILE", |s| {
            let iova = iova.as_ref().map(|i| u64_of("iova", i)).transpose()?;
            let flags = flags.unwrap_or(crate::dma_flags::READ_WRITE);
            s.ioas().map_file(iova, memory.inner.raw_fd(), u64_of("offset", &offset)?, u64_of("size", &size)?, flags)
        })
        .map(BigInt::from)
    }

    /// mmap of `length` bytes at `offset` of region `index` of the device of
    /// cdev `cdev` (one of `cdevs`), as `Device.mapRegion`. The mapping
    /// keeps the device file open until it is collected, even past `close()`.
    #[napi]
    pub fn map_region(&self, env: &Env, cdev: u32, index: u32, offset: i64, length: u32) -> Result<MappedRegion> {
        let m = self.with(env, "mmap", |s| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let d = cdev_device(s, cdev, &self.cdevs)?;
            d.map_region(&d.region(index)?, off, length as usize)
        })?;
        Ok(MappedRegion::own(m, length, format!("region {index} mapping of vfio{cdev} in {}", self.object)))
    }

    /// The 16-bit config-space word at `offset` of the device of cdev `cdev`.
    #[napi]
    pub fn read_config16(&self, env: &Env, cdev: u32, offset: u32) -> Result<u16> {
        self.with(env, "pread", |s| cdev_device(s, cdev, &self.cdevs)?.read_config::<2>(offset as u64)).map(u16::from_le_bytes)
    }

    /// Writes the 16-bit config-space word at `offset` of the device of cdev
    /// `cdev` (e.g. the command register's bus master bit before DMA).
    #[napi]
    pub fn write_config16(&self, env: &Env, cdev: u32, offset: u32, value: u16) -> Result<()> {
        self.with(env, "pwrite", |s| cdev_device(s, cdev, &self.cdevs)?.write_config(offset as u64, &value.to_le_bytes()))
    }

    /// The old process's side of an iommufd live update (Linux 6.13):
    /// the iommufd, every device cdev of this space, `memory` and `irqs`'
    /// eventfds go to the process at the other end of the UNIX socket
    /// `socketFd` with the description of `mappings` (iova, offset, size
    /// triples, each made with `mapFile` from `memory`), and the new process
    /// takes the pinned-page charge with IOMMU_IOAS_CHANGE_PROCESS. Nothing
    /// is remapped: DMA never sees a change. Rejects before anything is sent
    /// when it cannot work (ENOTTY before 6.13, EINVAL while a mapping of
    /// the iommufd was made from addresses, or for a triple outside
    /// `memory`). Resolves once the new process answers: `handedOver`, or
    /// not with the reason when it failed or died (the charge is this
    /// process's again). Calls on this space wait until it settles.
    #[napi(ts_return_type = "Promise<HandOverOutcome>")]
    pub fn hand_over(
        &self,
        env: &Env,
        socket_fd: i32,
        memory: &GuestMemory,
        mappings: BigUint64ArraySlice,
        irqs: Option<Vec<LiveIrqJs>>,
    ) -> Result<AsyncTask<IommufdHandOverTask>> {
        let triples = hand_over_mappings(&mappings, "iova, offset, size").map_err(|e| js_err(env, e))?;
        let mappings = triples.iter().map(|&[iova, offset, size]| crate::live::Mapping { iova, offset, size }).collect();
        Ok(AsyncTask::new(IommufdHandOverTask::new(self.open.clone(), self.object.clone(), socket_fd, memory, mappings, irqs)))
    }
}

/// Runs `f` on the open space of a hand-over task, off the JS thread.
pub(super) fn with_open<R>(
    open: &Mutex<Option<crate::IommufdSpace>>,
    object: &str,
    f: impl FnOnce(&crate::IommufdSpace) -> crate::Result<R>,
) -> crate::Result<R> {
    let guard = open.lock().unwrap_or_else(|p| p.into_inner());
    match guard.as_ref() {
        Some(s) => f(s),
        None => Err(closed("live update", object)),
    }
}

pub(super) type OpenSpace = Arc<Mutex<Option<crate::IommufdSpace>>>;

fn cdev_device<'a>(s: &'a crate::IommufdSpace, cdev: u32, cdevs: &[u32]) -> crate::Result<&'a crate::Device> {
    s.device(cdev).map(crate::CdevDevice::device).ok_or_else(|| {
        crate::Error::new(libc::ENOENT, "device", s.object()).with_detail(format!("vfio{cdev} is not in this space; its cdevs are {cdevs:?}"))
    })
}
