//! The Node face of vfio-core. All napi types live here and nowhere else.
//!
//! - Errors are JS `Error`s with stable properties: `code` (`EEXIST`, ...),
//!   `errno`, `ioctl`, `object`, and `entryIndex` for batches.
//! - Batches cross as typed arrays: a `BigUint64Array` of iova/vaddr/size
//!   triples (iova/size pairs to unmap) and a `Uint32Array` of flags (or one
//!   number for all), borrowed without copying.
//! - A mock host is described by a plain, JSON-able object
//!   ([`MockHostConfig`]); 64-bit quantities there are numbers or strings
//!   ("0x7fffffffff"), since JSON has no bigint.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};
use napi_derive::napi;

use crate::backend::{
    self, BarConfig, DeviceModelConfig, EduConfig, GenericDeviceConfig, IovaSpan, KernelBackend, KernelVersion,
    MockBackend, MockConfig, MockDeviceConfig, MockGroupConfig,
};
use crate::backend::mock::spapr::{SpaprDriver, SpaprProfile};
use crate::batch::{as_pairs, as_triples, BatchFlags};
use crate::spapr::{self as tce, DmaDirection, PeContainer, TceVersion};

/// Builds the JS error for `e`, with its properties, and hands it to napi to throw.
fn js_err(env: &Env, e: crate::Error) -> napi::Error {
    let build = || -> Result<napi::Error> {
        let mut obj = env.create_error(napi::Error::new(Status::GenericFailure, e.to_string()))?;
        obj.set_named_property("code", e.code())?;
        obj.set_named_property("errno", e.errno)?;
        obj.set_named_property("ioctl", e.ioctl)?;
        obj.set_named_property("object", e.object.as_str())?;
        if let Some(k) = e.entry {
            obj.set_named_property("entryIndex", k as f64)?;
        }
        if let Some(d) = &e.detail {
            obj.set_named_property("detail", d.as_str())?;
        }
        if !e.hint().is_empty() {
            obj.set_named_property("hint", e.hint())?;
        }
        Ok(napi::Error::from(obj.to_unknown()))
    };
    build().unwrap_or_else(|x| x)
}

fn bad_arg(what: impl Into<String>) -> crate::Error {
    crate::Error::new(libc::EINVAL, "argument", "vfio-core binding").with_detail(what)
}

fn u64_of(name: &str, v: &BigInt) -> std::result::Result<u64, crate::Error> {
    let (signed, value, lossless) = v.get_u64();
    if signed || !lossless {
        return Err(bad_arg(format!("{name} must be a bigint in 0..2^64")));
    }
    Ok(value)
}

fn num_or_str(name: &str, v: &Either<f64, String>) -> std::result::Result<u64, crate::Error> {
    match v {
        Either::A(n) if *n >= 0.0 && n.fract() == 0.0 && *n <= 9_007_199_254_740_991.0 => Ok(*n as u64),
        Either::A(_) => Err(bad_arg(format!("{name} must be a safe non-negative integer, or a string"))),
        Either::B(s) => {
            let t = s.trim();
            let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => t.parse(),
            };
            r.map_err(|_| bad_arg(format!("{name}: cannot read {s:?} as an integer")))
        }
    }
}

// ---------------------------------------------------------------------------
// Mock host configuration

/// One IOVA range, both ends inclusive.
#[napi(object)]
pub struct IovaSpanConfig {
    pub start: Either<f64, String>,
    pub end: Either<f64, String>,
}

/// A memory BAR of a generic device.
#[napi(object, js_name = "MockBarConfig")]
pub struct BarConfigJs {
    pub index: u32,
    pub size: Either<f64, String>,
    pub mmap: Option<bool>,
    /// Sparse mmap areas as [offset, size] pairs.
    pub sparse: Option<Vec<Vec<f64>>>,
}

/// What a mock device is: `kind` is `edu` (QEMU's edu) or `generic`.
#[napi(object, js_name = "MockDeviceModel")]
pub struct DeviceModelJs {
    pub kind: String,
    /// edu: DMA address mask (default 2^28-1).
    pub dma_mask: Option<Either<f64, String>>,
    /// Whether the kernel would find a reset method (default false).
    pub reset: Option<bool>,
    pub vendor: Option<u32>,
    pub device: Option<u32>,
    pub class_code: Option<u32>,
    pub bars: Option<Vec<BarConfigJs>>,
    pub msi_vectors: Option<u32>,
    pub msix_vectors: Option<u32>,
    pub pcie: Option<bool>,
}

#[napi(object, js_name = "MockDeviceConfig")]
pub struct MockDeviceJs {
    /// PCI address, e.g. "0000:00:03.0".
    pub address: String,
    /// Bound driver ("vfio-pci", "e1000e", ...); null or absent: unbound.
    pub driver: Option<Either<String, Null>>,
    /// Defaults to an edu.
    pub model: Option<DeviceModelJs>,
}

#[napi(object, js_name = "MockGroupConfig")]
pub struct MockGroupJs {
    pub id: u32,
    pub devices: Vec<MockDeviceJs>,
    /// Reserved regions removed from the IOVA ranges when the group attaches.
    pub reserved: Option<Vec<IovaSpanConfig>>,
}

/// A mock host. Every field is optional; the defaults are what the lab's
/// Linux 6.1 answered on an emulated VT-d: page sizes 0x40201000, IOVA ranges
/// 0-0xfedfffff and 0xfef00000-0x7fffffffff, dma_entry_limit 65535, and,
/// unless `groups` is given, one group (1) with an edu at 0000:00:03.0 bound
/// to vfio-pci.
#[napi(object)]
pub struct MockHostConfig {
    /// "6.1" (default) or "6.12".
    pub kernel: Option<String>,
    pub iova_pgsizes: Option<Either<f64, String>>,
    pub iova_ranges: Option<Vec<IovaSpanConfig>>,
    pub dma_entry_limit: Option<u32>,
    pub enforce_cache_coherency: Option<bool>,
    pub groups: Option<Vec<MockGroupJs>>,
    /// A pseries (POWER) host instead of x86: kernel 6.12, no type1, the
    /// sPAPR TCE driver with the PE profile QEMU's pseries machine gives
    /// (held to the real kernel by the pseries lab).
    pub spapr: Option<bool>,
}

fn span(name: &str, s: &IovaSpanConfig) -> std::result::Result<IovaSpan, crate::Error> {
    Ok(IovaSpan::new(num_or_str(name, &s.start)?, num_or_str(name, &s.end)?))
}

fn model_of(m: Option<&DeviceModelJs>) -> std::result::Result<DeviceModelConfig, crate::Error> {
    let Some(m) = m else { return Ok(DeviceModelConfig::Edu(EduConfig::default())) };
    match m.kind.as_str() {
        "edu" => {
            let mut c = EduConfig::default();
            if let Some(mask) = &m.dma_mask {
                c.dma_mask = num_or_str("dmaMask", mask)?;
            }
            c.reset = m.reset.unwrap_or(false);
            Ok(DeviceModelConfig::Edu(c))
        }
        "generic" => {
            let mut bars = Vec::new();
            for b in m.bars.iter().flatten() {
                let size = num_or_str("bars[].size", &b.size)?;
                if !size.is_power_of_two() {
                    return Err(bad_arg(format!("BAR {} size {size:#x} is not a power of two", b.index)));
                }
                let sparse = b.sparse.as_ref().map(|v| {
                    v.iter().map(|p| (p.first().copied().unwrap_or(0.0) as u64, p.get(1).copied().unwrap_or(0.0) as u64)).collect()
                });
                bars.push(BarConfig { index: b.index, size, mmap: b.mmap.unwrap_or(true), sparse });
            }
            Ok(DeviceModelConfig::Generic(GenericDeviceConfig {
                vendor: m.vendor.unwrap_or(0x1af4) as u16,
                device: m.device.unwrap_or(0x1000) as u16,
                class_code: m.class_code.unwrap_or(0xff0000),
                bars,
                reset: m.reset.unwrap_or(false),
                msi_vectors: m.msi_vectors.unwrap_or(0),
                msix_vectors: m.msix_vectors.unwrap_or(0),
                pcie: m.pcie.unwrap_or(false),
            }))
        }
        other => Err(bad_arg(format!("unknown device model kind {other:?}: use \"edu\" or \"generic\""))),
    }
}

fn config_of(c: Option<MockHostConfig>) -> std::result::Result<MockConfig, crate::Error> {
    let Some(c) = c else { return Ok(MockConfig::default()) };
    let mut out = if c.groups.is_some() { MockConfig::empty() } else { MockConfig::default() };
    out.kernel = match c.kernel.as_deref() {
        None | Some("6.1") => KernelVersion::V6_1,
        Some("6.12") => KernelVersion::V6_12,
        Some(k) => return Err(bad_arg(format!("kernel {k:?}: the mock models \"6.1\" and \"6.12\""))),
    };
    if let Some(p) = &c.iova_pgsizes {
        out.iova_pgsizes = num_or_str("iovaPgsizes", p)?;
        if out.iova_pgsizes == 0 {
            return Err(bad_arg("iovaPgsizes must have at least one page size bit"));
        }
    }
    if let Some(r) = &c.iova_ranges {
        out.iova_ranges = r.iter().map(|s| span("iovaRanges", s)).collect::<std::result::Result<_, _>>()?;
    }
    if let Some(l) = c.dma_entry_limit {
        out.dma_entry_limit = l;
    }
    out.enforce_cache_coherency = c.enforce_cache_coherency.unwrap_or(false);
    if c.spapr == Some(true) {
        out = SpaprDriver::pseries_config(out, SpaprProfile::qemu_pseries());
    }
    for g in c.groups.iter().flatten() {
        let mut group = MockGroupConfig::new(g.id);
        for d in &g.devices {
            group.devices.push(MockDeviceConfig {
                address: d.address.clone(),
                driver: match &d.driver {
                    Some(Either::A(name)) => Some(name.clone()),
                    _ => None,
                },
                model: model_of(d.model.as_ref())?,
            });
        }
        group.reserved = g.reserved.iter().flatten().map(|s| span("reserved", s)).collect::<std::result::Result<_, _>>()?;
        out.groups.push(group);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Backends

/// A VFIO system: the kernel's /dev/vfio, or an in-process mock host.
/// Containers and groups opened from one backend can be used together.
#[napi]
pub struct VfioBackend {
    inner: Arc<dyn backend::Backend>,
    mock: Option<Arc<MockBackend>>,
}

#[napi]
impl VfioBackend {
    /// The kernel's VFIO at /dev/vfio (or `devDir`).
    #[napi(factory)]
    pub fn kernel(dev_dir: Option<String>) -> Self {
        let k = match dev_dir {
            Some(d) => KernelBackend::with_dev_dir(d),
            None => KernelBackend::new(),
        };
        Self { inner: Arc::new(k), mock: None }
    }

    /// A mock host built from `config` (see MockHostConfig).
    #[napi(factory)]
    pub fn mock(env: &Env, config: Option<MockHostConfig>) -> Result<Self> {
        let cfg = config_of(config).map_err(|e| js_err(env, e))?;
        let m = Arc::new(MockBackend::new(cfg));
        Ok(Self { inner: m.clone(), mock: Some(m) })
    }

    /// "kernel" or "mock".
    #[napi(getter)]
    pub fn kind(&self) -> String {
        self.inner.kind().to_string()
    }

    #[napi]
    pub fn open_container(&self, env: &Env) -> Result<Container> {
        let c = crate::Container::open(self.inner.clone()).map_err(|e| js_err(env, e))?;
        Ok(Container { inner: c })
    }

    #[napi]
    pub fn open_group(&self, env: &Env, id: u32) -> Result<Group> {
        let g = crate::Group::open(self.inner.clone(), id).map_err(|e| js_err(env, e))?;
        Ok(Group { inner: g })
    }

    /// Mock only: bind a device to `driver` (null unbinds), as sysfs would.
    #[napi]
    pub fn bind(&self, env: &Env, address: String, driver: Option<String>) -> Result<()> {
        let m = self.mock_only(env, "bind")?;
        m.bind(&address, driver.as_deref())
            .map_err(|e| js_err(env, crate::Error::new(e.0, "bind", format!("mock device {address}"))))
    }

    /// Mock only: how many ioctls the mock has served.
    #[napi]
    pub fn ioctl_count(&self, env: &Env) -> Result<f64> {
        Ok(self.mock_only(env, "ioctlCount")?.ioctl_count() as f64)
    }

    fn mock_only(&self, env: &Env, what: &'static str) -> Result<&Arc<MockBackend>> {
        self.mock.as_ref().ok_or_else(|| {
            js_err(env, crate::Error::new(libc::ENOTTY, what, "kernel backend").with_detail("only a mock host has this"))
        })
    }
}

// ---------------------------------------------------------------------------
// Container

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
    inner: crate::Container,
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

// ---------------------------------------------------------------------------
// Group and device

#[napi(object, js_name = "GroupStatus")]
pub struct GroupStatusJs {
    pub viable: bool,
    pub container_set: bool,
    pub flags: u32,
}

#[napi]
pub struct Group {
    inner: crate::Group,
}

#[napi]
impl Group {
    #[napi(getter)]
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// `VFIO_GROUP_GET_STATUS`.
    #[napi]
    pub fn status(&self, env: &Env) -> Result<GroupStatusJs> {
        let s = self.inner.status().map_err(|e| js_err(env, e))?;
        Ok(GroupStatusJs { viable: s.viable, container_set: s.container_set, flags: s.flags })
    }

    /// `VFIO_GROUP_SET_CONTAINER`.
    #[napi]
    pub fn set_container(&self, env: &Env, container: &Container) -> Result<()> {
        self.inner.set_container(&container.inner).map_err(|e| js_err(env, e))
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    #[napi]
    pub fn unset_container(&self, env: &Env) -> Result<()> {
        self.inner.unset_container().map_err(|e| js_err(env, e))
    }

    /// `VFIO_GROUP_GET_DEVICE_FD`.
    #[napi]
    pub fn device(&self, env: &Env, name: String) -> Result<Device> {
        Ok(Device { inner: self.inner.device(&name).map_err(|e| js_err(env, e))? })
    }
}

#[napi(object, js_name = "DeviceInfo")]
pub struct DeviceInfoJs {
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
}

#[napi(object, js_name = "SparseArea")]
pub struct SparseAreaJs {
    pub offset: BigInt,
    pub size: BigInt,
}

#[napi(object, js_name = "RegionInfo")]
pub struct RegionInfoJs {
    pub index: u32,
    pub flags: u32,
    pub size: BigInt,
    pub offset: BigInt,
    pub sparse_areas: Option<Vec<SparseAreaJs>>,
}

#[napi(object, js_name = "IrqInfo")]
pub struct IrqInfoJs {
    pub index: u32,
    pub flags: u32,
    pub count: u32,
}

/// A device a PCI hot reset would also reset.
#[napi(object, js_name = "DependentDevice")]
pub struct DependentDeviceJs {
    pub group_id: u32,
    /// PCI address, "0000:01:02.0".
    pub address: String,
}

#[napi]
pub struct Device {
    inner: crate::Device,
}

#[napi]
impl Device {
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_string()
    }

    #[napi]
    pub fn info(&self, env: &Env) -> Result<DeviceInfoJs> {
        let i = self.inner.info().map_err(|e| js_err(env, e))?;
        Ok(DeviceInfoJs { flags: i.flags, num_regions: i.num_regions, num_irqs: i.num_irqs })
    }

    #[napi]
    pub fn region_info(&self, env: &Env, index: u32) -> Result<RegionInfoJs> {
        let r = self.inner.region_info(index).map_err(|e| js_err(env, e))?;
        Ok(RegionInfoJs {
            index: r.index,
            flags: r.flags,
            size: BigInt::from(r.size),
            offset: BigInt::from(r.offset),
            sparse_areas: r.sparse_areas.map(|v| {
                v.into_iter().map(|a| SparseAreaJs { offset: BigInt::from(a.offset), size: BigInt::from(a.size) }).collect()
            }),
        })
    }

    #[napi]
    pub fn irq_info(&self, env: &Env, index: u32) -> Result<IrqInfoJs> {
        let i = self.inner.irq_info(index).map_err(|e| js_err(env, e))?;
        Ok(IrqInfoJs { index: i.index, flags: i.flags, count: i.count })
    }

    /// `VFIO_DEVICE_SET_IRQS` with eventfds (-1 unassigns a vector; an
    /// empty array disables the index).
    #[napi]
    pub fn set_irq_eventfds(&self, env: &Env, index: u32, start: u32, fds: Vec<i32>) -> Result<()> {
        let data = if fds.is_empty() { crate::IrqData::None { count: 0 } } else { crate::IrqData::Eventfds(&fds) };
        self.inner.set_irqs(index, start, crate::IrqAction::Trigger, data).map_err(|e| js_err(env, e))
    }

    /// `VFIO_DEVICE_SET_IRQS` with `DATA_NONE`: `action` is "mask",
    /// "unmask" or "trigger" (fires the vectors: a loopback test).
    #[napi]
    pub fn set_irqs_none(&self, env: &Env, index: u32, start: u32, count: u32, action: String) -> Result<()> {
        let a = match action.as_str() {
            "mask" => crate::IrqAction::Mask,
            "unmask" => crate::IrqAction::Unmask,
            "trigger" => crate::IrqAction::Trigger,
            other => return Err(js_err(env, bad_arg(format!("action {other:?}: use mask, unmask or trigger")))),
        };
        self.inner.set_irqs(index, start, a, crate::IrqData::None { count }).map_err(|e| js_err(env, e))
    }

    /// `VFIO_DEVICE_GET_PCI_HOT_RESET_INFO`: the devices a bus or slot
    /// reset of this one also resets (ENODEV when it has neither).
    #[napi]
    pub fn pci_hot_reset_info(&self, env: &Env) -> Result<Vec<DependentDeviceJs>> {
        let v = self.inner.pci_hot_reset_info().map_err(|e| js_err(env, e))?;
        Ok(v.into_iter().map(|d| DependentDeviceJs { group_id: d.group_id, address: d.address() }).collect())
    }

    /// `VFIO_DEVICE_PCI_HOT_RESET` with the groups that hold every affected device.
    #[napi]
    pub fn pci_hot_reset(&self, env: &Env, groups: Vec<&Group>) -> Result<()> {
        let gs: Vec<&crate::Group> = groups.iter().map(|g| &g.inner).collect();
        self.inner.pci_hot_reset(&gs).map_err(|e| js_err(env, e))
    }

    /// `VFIO_DEVICE_RESET`.
    #[napi]
    pub fn reset(&self, env: &Env) -> Result<()> {
        self.inner.reset().map_err(|e| js_err(env, e))
    }

    /// Reads `length` bytes at `offset` of region `index` (pread).
    #[napi]
    pub fn read_region(&self, env: &Env, index: u32, offset: i64, length: u32) -> Result<Buffer> {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = self.inner.region(index)?;
            let mut buf = vec![0u8; length as usize];
            self.inner.read_region(&region, off, &mut buf)?;
            Ok(buf)
        })();
        r.map(Buffer::from).map_err(|e| js_err(env, e))
    }

    /// Writes `data` at `offset` of region `index` (pwrite).
    #[napi]
    pub fn write_region(&self, env: &Env, index: u32, offset: i64, data: &[u8]) -> Result<()> {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = self.inner.region(index)?;
            self.inner.write_region(&region, off, data)
        })();
        r.map_err(|e| js_err(env, e))
    }

    /// mmap of `length` bytes at `offset` of region `index`.
    #[napi]
    pub fn map_region(&self, env: &Env, index: u32, offset: i64, length: u32) -> Result<MappedRegion> {
        let r = (|| {
            let off = u64::try_from(offset).map_err(|_| bad_arg("offset must not be negative"))?;
            let region = self.inner.region(index)?;
            self.inner.map_region(&region, off, length as usize)
        })();
        Ok(MappedRegion { inner: r.map_err(|e| js_err(env, e))? })
    }
}

/// An mmap of part of a device region; accesses are single MMIO loads and
/// stores of the named width, little-endian.
#[napi]
pub struct MappedRegion {
    inner: crate::MappedRegion,
}

#[napi]
impl MappedRegion {
    #[napi(getter)]
    pub fn length(&self) -> u32 {
        self.inner.len() as u32
    }

    #[napi]
    pub fn read32(&self, env: &Env, offset: u32) -> Result<u32> {
        self.inner.read_u32(offset as u64).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn write32(&self, env: &Env, offset: u32, value: u32) -> Result<()> {
        self.inner.write_u32(offset as u64, value).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn read64(&self, env: &Env, offset: u32) -> Result<BigInt> {
        self.inner.read_u64(offset as u64).map(BigInt::from).map_err(|e| js_err(env, e))
    }

    #[napi]
    pub fn write64(&self, env: &Env, offset: u32, value: BigInt) -> Result<()> {
        let r = (|| self.inner.write_u64(offset as u64, u64_of("value", &value)?))();
        r.map_err(|e| js_err(env, e))
    }
}

// ---------------------------------------------------------------------------
// sPAPR (POWER)

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
    inner: tce::TceContainer<PeContainer>,
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

    /// `VFIO_IOMMU_MAP_DMA` into one window; `flags` is READ (1) | WRITE (2).
    #[napi]
    pub fn map(&mut self, env: &Env, iova: BigInt, vaddr: BigInt, size: BigInt, flags: u32) -> Result<()> {
        let r = (|| {
            let dir = direction_of(flags)?;
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

// ---------------------------------------------------------------------------
// Host memory for DMA

/// Page-aligned anonymous memory of this process with a stable address, to
/// map for DMA (`address`) and to read what a device wrote. Keep it alive
/// while a mapping refers to it; `free()` releases it at once.
#[napi]
pub struct HostMemory {
    inner: Option<crate::HostMemory>,
}

#[napi]
impl HostMemory {
    /// `size` bytes, rounded up to the page size, zero-filled.
    #[napi(constructor)]
    pub fn new(env: &Env, size: u32) -> Result<Self> {
        Ok(Self { inner: Some(crate::HostMemory::new(size as usize).map_err(|e| js_err(env, e))?) })
    }

    fn mem(&self, env: &Env) -> Result<&crate::HostMemory> {
        self.inner.as_ref().ok_or_else(|| {
            js_err(env, crate::Error::new(libc::EBADF, "memory access", "host memory").with_detail("already freed"))
        })
    }

    /// The virtual address to map.
    #[napi(getter)]
    pub fn address(&self, env: &Env) -> Result<BigInt> {
        Ok(BigInt::from(self.mem(env)?.addr()))
    }

    #[napi(getter)]
    pub fn size(&self, env: &Env) -> Result<u32> {
        Ok(self.mem(env)?.len() as u32)
    }

    #[napi]
    pub fn read(&self, env: &Env, offset: u32, length: u32) -> Result<Buffer> {
        let mut out = vec![0u8; length as usize];
        self.mem(env)?.read(offset as usize, &mut out).map_err(|e| js_err(env, e))?;
        Ok(Buffer::from(out))
    }

    #[napi]
    pub fn write(&self, env: &Env, offset: u32, data: &[u8]) -> Result<()> {
        self.mem(env)?.write(offset as usize, data).map_err(|e| js_err(env, e))
    }

    /// Unmaps the memory now rather than at garbage collection.
    #[napi]
    pub fn free(&mut self) {
        self.inner = None;
    }
}
