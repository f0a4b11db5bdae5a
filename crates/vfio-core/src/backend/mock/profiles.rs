//! Host IOMMU profiles: what a type1 container answers on each kind of host
//! IOMMU, as data. Every value is what Debian's 6.1 kernel answered in the
//! lab (packages/testkit/src/lab: `x86`, `x86-amd`, `arm64`; the lab compares
//! the mock configured with these profiles with that kernel, case by case).
//! A new host IOMMU is a new profile here, never a branch through the mock.

use super::config::{IommufdProfile, IovaSpan, MockConfig};

/// One host IOMMU as VFIO_IOMMU_GET_INFO and each group's `reserved_regions` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIommuProfile {
    pub name: &'static str,
    /// `iova_pgsizes`.
    pub iova_pgsizes: u64,
    /// The domain's aperture (geometry), before reserved regions are removed.
    pub aperture: IovaSpan,
    /// What every group reserves (`reserved_regions`, minus `direct-relaxable`).
    pub group_reserved: &'static [IovaSpan],
    /// VFIO_DMA_CC_IOMMU once a group is attached (IOMMU_CAP_CACHE_COHERENCY).
    pub enforce_cache_coherency: bool,
    /// A device joins its IOMMU group only when a driver probes it
    /// (arm64 with a device tree: of_dma_configure -> iommu_probe_device
    /// runs from really_probe), so an unbound device is in no group and has
    /// no `iommu_group` link. On x86 every device joins at bus scan.
    pub groups_join_at_probe: bool,
}

/// x86's MSI window (0xfee00000-0xfeefffff, `msi` on VT-d and AMD-Vi).
pub const X86_MSI_WINDOW: IovaSpan = IovaSpan::new(0xfee0_0000, 0xfeef_ffff);
/// AMD-Vi's HyperTransport hole below 1 TiB (`reserved`; HT_RANGE_START..HT_RANGE_END).
pub const AMD_HT_HOLE: IovaSpan = IovaSpan::new(0xfd_0000_0000, 0xff_ffff_ffff);
/// SMMUv3's software MSI doorbell window (`msi`; MSI_IOVA_BASE, MSI_IOVA_LENGTH).
pub const SMMU_MSI_WINDOW: IovaSpan = IovaSpan::new(0x0800_0000, 0x080f_ffff);

/// QEMU 7.2's intel-iommu (aw-bits 39): 4K|2M|1G, no snoop control.
pub const VTD: HostIommuProfile = HostIommuProfile {
    name: "vtd",
    iova_pgsizes: 0x4020_1000,
    aperture: IovaSpan::new(0, 0x7f_ffff_ffff),
    group_reserved: &[X86_MSI_WINDOW],
    enforce_cache_coherency: false,
    groups_join_at_probe: false,
};

/// QEMU 7.2's amd-iommu: every page size from 4 KiB up but 512 GiB
/// (AMD_IOMMU_PGSIZES), a 64-bit aperture, the MSI window and the
/// HyperTransport hole in every group, cache coherency enforced. The lab
/// read iova_ranges 0-0xfedfffff, 0xfef00000-0xfcffffffff,
/// 0x10000000000-0xffffffffffffffff.
pub const AMD_VI: HostIommuProfile = HostIommuProfile {
    name: "amd-vi",
    iova_pgsizes: 0xffff_ff7f_ffff_f000,
    aperture: IovaSpan::new(0, u64::MAX),
    group_reserved: &[X86_MSI_WINDOW, AMD_HT_HOLE],
    enforce_cache_coherency: true,
    groups_join_at_probe: false,
};

/// QEMU 7.2's SMMUv3 on `virt` (4 KiB granule, 48-bit input addresses),
/// with the MSI doorbell window low in the IOVA space. Devices join groups
/// when a driver probes them (the lab's unbound edu has no `iommu_group`).
pub const SMMUV3: HostIommuProfile = HostIommuProfile {
    name: "smmuv3",
    iova_pgsizes: 0x4020_1000,
    aperture: IovaSpan::new(0, 0xffff_ffff_ffff),
    group_reserved: &[SMMU_MSI_WINDOW],
    // QEMU's SMMUv3 has no COHACC (IDR0 features 0x8305 in the lab):
    // VFIO_DMA_CC_IOMMU answers 0.
    enforce_cache_coherency: false,
    groups_join_at_probe: true,
};

/// QEMU's virtio-iommu-pci on q35, described by the ACPI VIOT table (the
/// lab's `iommufd` profile, second boot, on its 6.12 kernel; QEMU 7.2 and
/// 10.0 alike). The device offers every page size from 4 KiB
/// (`page mask: 0xfffffffffffff000`) over a 64-bit input range, and
/// reserves the x86 MSI window as a VIRTIO_IOMMU_RESV_MEM_T_MSI property of
/// every endpoint's PROBE (hw/i386/pc.c sets it), which Linux lists as
/// `msi` in each group. Devices join their group when a driver probes them
/// (acpi_dma_configure -> viot_iommu_configure, from really_probe): an
/// unbound edu has no `iommu_group`. Cache coherency is what
/// viommu_capable answers for IOMMU_CAP_CACHE_COHERENCY (true); no lab case
/// reads it here, since the iommufd kernel has no legacy type1.
pub const VIRTIO_IOMMU: HostIommuProfile = HostIommuProfile {
    name: "virtio-iommu",
    iova_pgsizes: 0xffff_ffff_ffff_f000,
    aperture: IovaSpan::new(0, u64::MAX),
    group_reserved: &[X86_MSI_WINDOW],
    enforce_cache_coherency: true,
    groups_join_at_probe: true,
};

/// Every profile, by name.
pub const PROFILES: [&HostIommuProfile; 4] = [&VTD, &AMD_VI, &SMMUV3, &VIRTIO_IOMMU];

impl HostIommuProfile {
    pub fn named(name: &str) -> Option<&'static HostIommuProfile> {
        PROFILES.into_iter().find(|p| p.name == name)
    }

    /// The profiles' names, quoted and joined for an error message.
    pub fn names() -> String {
        PROFILES.iter().map(|p| format!("{:?}", p.name)).collect::<Vec<_>>().join(", ")
    }
}

impl MockConfig {
    /// This host's type1 answers as `profile` gives them; groups added
    /// afterwards take `profile.group_reserved` with [`Self::reserve_profile_regions`].
    pub fn with_iommu_profile(mut self, profile: &HostIommuProfile) -> Self {
        self.iova_pgsizes = profile.iova_pgsizes;
        self.iova_ranges = vec![profile.aperture];
        self.enforce_cache_coherency = profile.enforce_cache_coherency;
        self
    }
}

impl IommufdProfile {
    /// An iommufd kernel on `profile`'s IOMMU: its paging domains have the
    /// profile's page sizes and aperture; `hw_info_type` and `hw_info` are
    /// what IOMMU_GET_HW_INFO returned in the lab. It answers as the lab's
    /// kernel (7.2): file mappings, the ATS-not-supported bit and the
    /// selftest mock domain on the generic page table.
    pub fn on(profile: &HostIommuProfile, hw_info_type: u32, hw_info: Vec<u8>) -> Self {
        Self {
            pgsize_bitmap: profile.iova_pgsizes,
            aperture: profile.aperture,
            dirty_tracking: false,
            hw_info_type,
            hw_info,
            allow_unsafe_interrupts: false,
            transparent_hugepage: true,
            vfio_compat_container: false,
            selftest: false,
            selftest_probes: false,
            geometry_at_first_attach: false,
            file_mappings: true,
            ats_not_supported_cap: true,
            selftest_generic_pt: true,
        }
    }

    /// QEMU's intel-iommu (the [`VTD`] profile) whose capability and
    /// extended capability registers read `cap_reg` and `ecap_reg`
    /// (intel_iommu_hw_info hands out the raw registers; they depend on
    /// QEMU's version and options, so the lab reads them from the guest).
    /// No dirty tracking: QEMU models no second-stage A/D bits.
    pub fn qemu_vtd(cap_reg: u64, ecap_reg: u64) -> Self {
        let data = crate::uapi::iommufd::iommu_hw_info_vtd { flags: 0, __reserved: 0, cap_reg, ecap_reg };
        let mut bytes = vec![0u8; std::mem::size_of_val(&data)];
        crate::backend::write_pod(&mut bytes, 0, &data, std::mem::size_of_val(&data));
        Self::on(&VTD, crate::uapi::iommufd::IOMMU_HW_INFO_TYPE_INTEL_VTD, bytes)
    }
}

impl IommufdProfile {
    /// An iommufd kernel on `profile`'s IOMMU as the lab knows it: on
    /// [`VTD`], QEMU's intel-iommu with zero registers (they depend on
    /// QEMU's options); otherwise IOMMU_GET_HW_INFO answers
    /// IOMMU_HW_INFO_TYPE_NONE with no data, which is what the lab kernel
    /// answered on [`VIRTIO_IOMMU`] (type 0, data_len 0: virtio-iommu's
    /// driver has no `hw_info` op), whose domains also get their geometry
    /// only at their first attach
    /// ([`IommufdProfile::geometry_at_first_attach`]). No profile has dirty
    /// tracking.
    pub fn for_host(profile: &HostIommuProfile) -> Self {
        if profile.name == VTD.name {
            Self::qemu_vtd(0, 0)
        } else {
            let mut p = Self::on(profile, crate::uapi::iommufd::IOMMU_HW_INFO_TYPE_NONE, Vec::new());
            p.geometry_at_first_attach = profile.name == VIRTIO_IOMMU.name;
            p
        }
    }
}

impl MockConfig {
    /// This host runs an iommufd kernel (CONFIG_IOMMUFD, VFIO_DEVICE_CDEV)
    /// answering as `profile` says.
    pub fn with_iommufd(mut self, profile: IommufdProfile) -> Self {
        self.iommufd = Some(profile);
        self
    }
}
