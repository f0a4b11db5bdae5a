//! A mock host described by a plain, JSON-able object ([`MockHostConfig`]).

use napi::bindgen_prelude::*;
use napi_derive::napi;

use super::args::num_or_str;
use super::error::bad_arg;
use crate::backend::{BarConfig, DeviceModelConfig, EduConfig, GenericDeviceConfig, HostIommuProfile, IommufdProfile, IovaSpan, KernelVersion, MockConfig, MockDeviceConfig, MockGroupConfig};

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
    /// Reserved regions removed from the IOVA ranges when the group attaches;
    /// absent: the host IOMMU profile's (its MSI window), as the kernel
    /// reserves them in every group.
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
    /// A host IOMMU profile measured in the lab: "vtd" (the default),
    /// "amd-vi" or "smmuv3" (page sizes, aperture, cache coherency); the
    /// fields above override it.
    pub iommu_profile: Option<String>,
    /// Whether the host isolates MSIs (interrupt remapping, or a GIC ITS);
    /// default true. Without it VFIO_SET_IOMMU fails with EPERM unless
    /// `allowUnsafeInterrupts`.
    pub msi_isolated: Option<bool>,
    /// vfio_iommu_type1's allow_unsafe_interrupts; default false.
    pub allow_unsafe_interrupts: Option<bool>,
    /// A kernel with CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV (the iommufd
    /// lab's 6.12): /dev/iommu and /dev/vfio/devices/vfioN exist, and each
    /// group reserves the host IOMMU profile's regions (the MSI window) in an
    /// IOAS its devices attach to. Default false, as Debian's kernels. Its
    /// iommufd answers as Linux 7.2 (IOMMU_IOAS_MAP_FILE and
    /// IOMMU_IOAS_CHANGE_PROCESS, Linux 6.13) unless `kernel` is given:
    /// then both answer ENOTTY, as 6.12's do.
    pub iommufd: Option<bool>,
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
            c.reset = m.reset.unwrap_or(c.reset);
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
                let mut bar = BarConfig::new(b.index, size);
                bar.mmap = b.mmap.unwrap_or(bar.mmap);
                bar.sparse = sparse;
                bars.push(bar);
            }
            let d = GenericDeviceConfig::default();
            Ok(DeviceModelConfig::Generic(GenericDeviceConfig {
                vendor: m.vendor.map_or(d.vendor, |v| v as u16),
                device: m.device.map_or(d.device, |v| v as u16),
                class_code: m.class_code.unwrap_or(d.class_code),
                bars,
                reset: m.reset.unwrap_or(d.reset),
                msi_vectors: m.msi_vectors.unwrap_or(d.msi_vectors),
                msix_vectors: m.msix_vectors.unwrap_or(d.msix_vectors),
                pcie: m.pcie.unwrap_or(d.pcie),
            }))
        }
        other => Err(bad_arg(format!("unknown device model kind {other:?}: use \"edu\" or \"generic\""))),
    }
}

pub(super) fn config_of(c: Option<MockHostConfig>) -> std::result::Result<MockConfig, crate::Error> {
    let Some(c) = c else { return Ok(MockConfig::default()) };
    let mut out = if c.groups.is_some() { MockConfig::empty() } else { MockConfig::default() };
    out.kernel = match c.kernel.as_deref() {
        None => KernelVersion::default(),
        Some("6.1") => KernelVersion::V6_1,
        Some("6.12") => KernelVersion::V6_12,
        Some(k) => return Err(bad_arg(format!("kernel {k:?}: the mock models \"6.1\" and \"6.12\""))),
    };
    let mut profile = &crate::backend::VTD;
    if let Some(name) = &c.iommu_profile {
        let p = HostIommuProfile::named(name)
            .ok_or_else(|| bad_arg(format!("iommuProfile {name:?}: the mock has {}", HostIommuProfile::names())))?;
        out = out.with_iommu_profile(p);
        profile = p;
    }
    out.msi_isolated = c.msi_isolated.unwrap_or(out.msi_isolated);
    out.allow_unsafe_interrupts = c.allow_unsafe_interrupts.unwrap_or(out.allow_unsafe_interrupts);
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
    if let Some(e) = c.enforce_cache_coherency {
        out.enforce_cache_coherency = e;
    }
    if c.spapr == Some(true) {
        out = out.on_qemu_pseries();
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
        group.reserved = match &g.reserved {
            Some(r) => r.iter().map(|s| span("reserved", s)).collect::<std::result::Result<_, _>>()?,
            // What the kernel reserves in every group on this IOMMU (the MSI
            // window; SMMUv3's doorbell sits low in the IOVA space, where
            // with_iommu_profile's whole aperture would otherwise accept a map).
            None => profile.group_reserved.to_vec(),
        };
        out.groups.push(group);
    }
    if c.groups.is_none() && c.iommu_profile.is_some() {
        for g in &mut out.groups {
            g.reserved.extend_from_slice(profile.group_reserved);
        }
    }
    if c.iommufd == Some(true) {
        // The VT-d registers GET_HW_INFO returns depend on QEMU's options;
        // the binding does not expose GET_HW_INFO, so they stay zero here.
        let mut p = IommufdProfile::for_host(profile);
        // The profile answers as the lab's 7.2; a kernel named explicitly
        // here predates 6.13, whose iommufd has no IOMMU_IOAS_MAP_FILE nor
        // IOMMU_IOAS_CHANGE_PROCESS (both ENOTTY, as the lab's 6.12 answers).
        if c.kernel.is_some() {
            p.file_mappings = false;
        }
        out = out.with_iommufd(p);
        for g in &mut out.groups {
            for r in profile.group_reserved {
                if !g.reserved.contains(r) {
                    g.reserved.push(*r);
                }
            }
        }
    }
    Ok(out)
}
