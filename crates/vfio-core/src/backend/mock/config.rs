//! How a mock host looks: its IOMMU, its groups, their devices and drivers.
//! Plain data, built by tests and fixtures (and from JSON through the Node
//! binding). The defaults are what the lab's real kernel answered
//! (packages/testkit/src/lab/README.md, "What the VT-d host measured"):
//! Linux 6.1, type1v2 on an emulated VT-d with 39-bit addressing and the
//! MSI window reserved.

use std::fmt;
use std::sync::Arc;

use super::pin::MemlockPolicy;
use super::spapr::{SpaprDriver, SpaprProfile};
use super::IommuDriverOps;

/// One usable (or reserved) IOVA range, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IovaSpan {
    pub start: u64,
    pub end: u64,
}

impl IovaSpan {
    pub const fn new(start: u64, end: u64) -> Self {
        Self { start, end }
    }
}

/// Kernel versions whose answers differ in a way the mock models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelVersion {
    /// Debian bookworm's 6.1.
    #[default]
    V6_1,
    /// 6.12 (bookworm-backports, and trixie).
    V6_12,
}

/// A driver a mock PCI function can be bound to, as sysfs names it.
pub const VFIO_PCI: &str = "vfio-pci";

/// The mock host.
#[derive(Clone)]
pub struct MockConfig {
    pub kernel: KernelVersion,
    /// The IOMMU page-size bitmap (`iova_pgsizes`): 4K | 2M | 1G on VT-d.
    pub iova_pgsizes: u64,
    /// The IOMMU aperture minus the host-wide reserved regions, as
    /// VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE reports it before per-group
    /// reserved regions are removed.
    pub iova_ranges: Vec<IovaSpan>,
    /// vfio_iommu_type1's `dma_entry_limit` module parameter.
    pub dma_entry_limit: u32,
    /// Whether the IOMMU enforces cache coherency (VT-d snoop control);
    /// QEMU's emulated VT-d does not by default.
    pub enforce_cache_coherency: bool,
    pub groups: Vec<MockGroupConfig>,
    /// Extra IOMMU drivers (the kernel's `iommu_drivers_list`), asked after
    /// the built-in type1 driver unless `type1` is false. sPAPR registers here.
    pub iommu_drivers: Vec<Arc<dyn IommuDriverOps>>,
    /// Whether vfio_iommu_type1 is loaded.
    pub type1: bool,
    /// Whether the host isolates MSIs (x86 interrupt remapping; Arm a GIC
    /// ITS): irq_domain_check_msi_remap() || IOMMU_CAP_INTR_REMAP. Without
    /// it type1's attach_group fails with EPERM unless
    /// `allow_unsafe_interrupts`.
    pub msi_isolated: bool,
    /// vfio_iommu_type1's `allow_unsafe_interrupts` module parameter.
    pub allow_unsafe_interrupts: bool,
    /// Where RLIMIT_MEMLOCK and CAP_IPC_LOCK come from when maps pin
    /// memory: this process's own, as the kernel reads them, by default.
    pub memlock: MemlockPolicy,
    /// The kernel has CONFIG_IOMMUFD and CONFIG_VFIO_DEVICE_CDEV: /dev/iommu
    /// and /dev/vfio/devices/vfioN exist, answering as this profile says.
    /// None (Debian's kernels): both opens fail with ENOENT.
    pub iommufd: Option<IommufdProfile>,
}

/// What an iommufd kernel's IOMMU driver makes of a paging domain and
/// reports for a device, as data (see `MockConfig::with_iommufd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommufdProfile {
    /// The domain's `pgsize_bitmap`: its smallest page becomes the IOVA
    /// alignment of an IOAS holding it (iopt_table_add_domain).
    pub pgsize_bitmap: u64,
    /// The domain's geometry: outside it is reserved in the IOAS.
    pub aperture: IovaSpan,
    /// IOMMU_CAP_DIRTY_TRACKING (VT-d second-stage A/D bits; QEMU's
    /// intel-iommu has none).
    pub dirty_tracking: bool,
    /// IOMMU_GET_HW_INFO's `out_data_type` and driver data.
    pub hw_info_type: u32,
    pub hw_info: Vec<u8>,
    /// iommufd's own `allow_unsafe_interrupts` module parameter.
    pub allow_unsafe_interrupts: bool,
    /// CONFIG_TRANSPARENT_HUGEPAGE: iopt_alloc_iova keeps a buffer's
    /// alignment in the IOVA it chooses up to HPAGE_SIZE with it, and only
    /// up to PAGE_SIZE without (6.12.117, io_pagetable.c `max_alignment`).
    /// Distribution kernels have it; the lab's kernel (x86_64_defconfig +
    /// kvm_guest.config) does not, and chose 0x1000 for a 64 KiB buffer
    /// aligned to 2 MiB.
    pub transparent_hugepage: bool,
    /// CONFIG_IOMMUFD_VFIO_CONTAINER: /dev/vfio/vfio is iommufd's
    /// (drivers/iommu/iommufd/vfio_compat.c; the kernel logs "IOMMUFD is
    /// providing /dev/vfio/vfio, not VFIO"), so opening it gives an iommufd
    /// a device cdev can bind to. The mock answers the iommufd ioctls on
    /// it, not the type1 compatibility ioctls: the lab holds those to the
    /// kernel against the legacy type1 answers instead.
    pub vfio_compat_container: bool,
    /// CONFIG_IOMMUFD_TEST: /dev/iommu also answers IOMMU_TEST_CMD, whose
    /// selftest mock domain has dirty tracking (`iommufd_selftest.rs`).
    pub selftest: bool,
    /// Whether the selftest's mock IOMMU gets to probe the mock devices it
    /// creates. __iommu_probe_device gives a device without a firmware
    /// node the ops of the first IOMMU registered without one
    /// (iommu_fwspec_ops -> iommu_ops_from_fwnode(NULL), 6.12); VT-d
    /// registers that way at boot, before iommufd's init registers the mock
    /// IOMMU, so behind it a mock device gets no IOMMU and IOMMU_TEST's
    /// MOCK_DOMAIN fails in iommufd_device_bind with EINVAL (no
    /// IOMMU_CAP_CACHE_COHERENCY). The lab measured that behind QEMU's
    /// VT-d; in a guest without an IOMMU, and behind virtio-iommu (which
    /// registers with its VIOT firmware node), the mock IOMMU probes them.
    pub selftest_probes: bool,
    /// The IOMMU driver gives a domain its geometry only when a device first
    /// attaches (virtio-iommu in 6.12.117: viommu_domain_alloc leaves it
    /// zero, viommu_domain_finalise sets it from viommu_attach_dev). A HWPT
    /// from IOMMU_HWPT_ALLOC joins its IOAS before any attach, so
    /// iopt_table_add_domain sees an aperture of 0-0 and reserves
    /// 1-ULONG_MAX there until the HWPT is destroyed (the lab read IOVA
    /// ranges `[0x0-0x0]`); an automatic HWPT attaches first
    /// (iommufd_hwpt_paging_alloc's immediate_attach, which exists for such
    /// drivers) and gets the real aperture. 7.2's viommu_domain_alloc_paging
    /// sets the geometry at allocation, so there it is false (vfio-lab's
    /// kernel_answers).
    pub geometry_at_first_attach: bool,
    /// IOMMU_IOAS_MAP_FILE and IOMMU_IOAS_CHANGE_PROCESS exist (Linux 6.13,
    /// ioas.c); before, the iommufd answers both with ENOTTY
    /// (iommufd_fops_ioctl finds no op for the number).
    pub file_mappings: bool,
    /// GET_HW_INFO sets IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED for a device
    /// whose IOMMU will not use ATS for it (device.c
    /// iommufd_get_hw_info: `!device_iommu_capable(dev,
    /// IOMMU_CAP_PCI_ATS_SUPPORTED)`). No mock device has an ATS
    /// capability, so with this every device gets the bit. Seen in the lab:
    /// 6.12.117 leaves it out, 7.2.13 sets it for edu.
    pub ats_not_supported_cap: bool,
    /// IOMMUFD_TEST's mock domain is built on the generic page table
    /// (7.2's selftest.c: an AMDv1-format table with 2 KiB items,
    /// drivers/iommu/generic_pt/fmt/iommu_mock.c), not 6.12's xarray of
    /// 2 KiB pfns. What the selftest answers otherwise then
    /// (`iommufd_selftest.rs` cites each): DIRTY marks the entry at each
    /// IOVA and counts every set bit, mapped or not; a mapping is held in
    /// contiguous entries as large as alignment allows, whose dirty state
    /// is read and cleared as one; MOCK_FLAGS_DEVICE_HUGE_IOVA is gone
    /// (MOCK_IOMMUPT_HUGE took its place) and MOCK_FLAGS_DEVICE_PASID is
    /// known. Seen in the lab: 6.12.117 without, 7.2.13 with.
    pub selftest_generic_pt: bool,
}

impl fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockConfig")
            .field("kernel", &self.kernel)
            .field("iova_pgsizes", &format_args!("{:#x}", self.iova_pgsizes))
            .field("iova_ranges", &self.iova_ranges)
            .field("dma_entry_limit", &self.dma_entry_limit)
            .field("groups", &self.groups)
            .field("iommu_drivers", &self.iommu_drivers.iter().map(|d| d.name()).collect::<Vec<_>>())
            .field("type1", &self.type1)
            .field("msi_isolated", &self.msi_isolated)
            .field("allow_unsafe_interrupts", &self.allow_unsafe_interrupts)
            .field("memlock", &self.memlock)
            .field("iommufd", &self.iommufd)
            .finish()
    }
}

/// The lab's VT-d: 39-bit aperture with the MSI window 0xfee00000-0xfeefffff removed.
pub const VTD_IOVA_RANGES: [IovaSpan; 2] =
    [IovaSpan::new(0, 0xfedf_ffff), IovaSpan::new(0xfef0_0000, 0x7f_ffff_ffff)];

impl Default for MockConfig {
    /// An x86 host with one group (1) holding one `edu` device at
    /// 0000:00:03.0 bound to vfio-pci.
    fn default() -> Self {
        Self::empty().with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0")))
    }
}

impl MockConfig {
    /// An x86 host as the lab's kernel answered, with no groups.
    pub fn empty() -> Self {
        Self {
            kernel: KernelVersion::V6_1,
            iova_pgsizes: 0x4020_1000,
            iova_ranges: VTD_IOVA_RANGES.to_vec(),
            dma_entry_limit: 65535,
            enforce_cache_coherency: false,
            groups: Vec::new(),
            iommu_drivers: Vec::new(),
            type1: true,
            msi_isolated: true,
            allow_unsafe_interrupts: false,
            memlock: MemlockPolicy::Process,
            iommufd: None,
        }
    }

    pub fn with_group(mut self, group: MockGroupConfig) -> Self {
        self.groups.push(group);
        self
    }

    /// This host as a QEMU pseries guest sees it: see
    /// [`SpaprDriver::pseries_config`] with [`SpaprProfile::qemu_pseries`].
    pub fn on_qemu_pseries(self) -> Self {
        SpaprDriver::pseries_config(self, SpaprProfile::qemu_pseries())
    }
}

/// One IOMMU group.
#[derive(Debug, Clone)]
pub struct MockGroupConfig {
    pub id: u32,
    pub devices: Vec<MockDeviceConfig>,
    /// Reserved regions of this group that are removed from the container's
    /// IOVA ranges when it attaches (`reserved_regions` in sysfs, except
    /// `direct-relaxable` ones, which vfio does not exclude).
    pub reserved: Vec<IovaSpan>,
}

impl MockGroupConfig {
    pub fn new(id: u32) -> Self {
        Self { id, devices: Vec::new(), reserved: Vec::new() }
    }

    pub fn with_device(mut self, device: MockDeviceConfig) -> Self {
        self.devices.push(device);
        self
    }
}

/// One PCI function in a group.
#[derive(Debug, Clone)]
pub struct MockDeviceConfig {
    /// Its PCI address, the name `VFIO_GROUP_GET_DEVICE_FD` takes.
    pub address: String,
    /// The bound driver (`vfio-pci`, `e1000e`, ...), `None` when unbound.
    pub driver: Option<String>,
    pub model: DeviceModelConfig,
}

impl MockDeviceConfig {
    /// QEMU's `edu` bound to vfio-pci.
    pub fn edu(address: &str) -> Self {
        Self { address: address.into(), driver: Some(VFIO_PCI.into()), model: DeviceModelConfig::Edu(EduConfig::default()) }
    }

    pub fn bound_to(mut self, driver: Option<&str>) -> Self {
        self.driver = driver.map(str::to_string);
        self
    }
}

/// What the device does.
#[derive(Debug, Clone)]
pub enum DeviceModelConfig {
    Edu(EduConfig),
    Generic(GenericDeviceConfig),
}

/// QEMU's `edu` (hw/misc/edu.c).
#[derive(Debug, Clone)]
pub struct EduConfig {
    /// `dma_mask` property: DMA addresses are clamped to it (edu_clamp_addr).
    pub dma_mask: u64,
    /// Whether the kernel found a reset method (a device alone on a bus
    /// behind a bridge gets a bus reset; one on the root bus gets none).
    pub reset: bool,
    /// Registers big-endian, as QEMU's edu (DEVICE_NATIVE_ENDIAN) is on a
    /// ppc64 target: a little-endian pseries guest reads its id 0x010000ed
    /// as 0xed000001 (the pseries lab's reading).
    pub big_endian: bool,
    /// Command register bits the platform set before the host kernel's
    /// driver saw the device: none on the x86 lab; SERR# enable (0x100) on
    /// pseries, where the lab reads 0x0102 right after open.
    pub command_at_boot: u16,
}

impl Default for EduConfig {
    fn default() -> Self {
        Self { dma_mask: (1 << 28) - 1, reset: false, big_endian: false, command_at_boot: 0 }
    }
}

/// A plain memory-BAR device whose BARs are RAM, for region and sparse-mmap cases.
#[derive(Debug, Clone)]
pub struct GenericDeviceConfig {
    pub vendor: u16,
    pub device: u16,
    pub class_code: u32,
    pub bars: Vec<BarConfig>,
    pub reset: bool,
    pub msi_vectors: u32,
    pub msix_vectors: u32,
    pub pcie: bool,
}

/// The default: a virtio-style vendor/device (0x1af4:0x1000), class
/// "unassigned" (0xff0000), no BARs, no reset, no MSI/MSI-X, conventional PCI.
impl Default for GenericDeviceConfig {
    fn default() -> Self {
        Self {
            vendor: 0x1af4,
            device: 0x1000,
            class_code: 0xff0000,
            bars: Vec::new(),
            reset: false,
            msi_vectors: 0,
            msix_vectors: 0,
            pcie: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BarConfig {
    pub index: u32,
    pub size: u64,
    pub mmap: bool,
    /// Sparse mmap areas (offset, size) reported as VFIO_REGION_INFO_CAP_SPARSE_MMAP.
    pub sparse: Option<Vec<(u64, u64)>>,
}

impl BarConfig {
    /// A memory BAR user space may mmap, with no sparse areas.
    pub fn new(index: u32, size: u64) -> Self {
        Self { index, size, mmap: true, sparse: None }
    }
}
