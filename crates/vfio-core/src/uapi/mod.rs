//! Raw kernel ABI from `include/uapi/linux/vfio.h`. Nothing else in the crate
//! declares a kernel constant or struct; `tests/abi.rs` compiles a C program
//! against the system's header and checks every size, offset and ioctl
//! number declared here.
//!
//! Names follow the header exactly (`vfio_group_status`, `VFIO_SET_IOMMU`) so
//! a reader can grep the kernel for them.
//!
//! - this file: ioctl numbering, API and extension numbers, the capability
//!   chain header, container, group and device structures;
//! - [`type1`]: the type1/type1v2 IOMMU (info, capabilities, map, unmap);
//! - [`spapr`]: the sPAPR TCE IOMMU (owned by the sPAPR work);
//! - [`iommufd`]: /dev/iommu and the VFIO device cdev (checked against the lab kernel's headers);
//! - [`iommufd_test`]: IOMMUFD_TEST's selftest command, for the lab only.

#![allow(non_camel_case_types)]

pub mod iommufd;
pub mod iommufd_test;
pub mod spapr;
pub mod type1;

pub use type1::*;

// ---------------------------------------------------------------------------
// ioctl numbering (include/uapi/asm-generic/ioctl.h, arch/powerpc/include/uapi/asm/ioctl.h)

/// `_IOC_NONE` and the direction shift differ by architecture: POWER (and
/// MIPS, SPARC) encode "no data" as 1 at bit 29, the generic layout as 0 at
/// bit 30. VFIO uses only `_IO`, so only the "none" direction matters.
#[cfg(any(target_arch = "powerpc", target_arch = "powerpc64", target_arch = "mips", target_arch = "mips64", target_arch = "sparc64"))]
pub(crate) const IOC_NONE_BITS: u64 = 1 << 29;
#[cfg(not(any(target_arch = "powerpc", target_arch = "powerpc64", target_arch = "mips", target_arch = "mips64", target_arch = "sparc64")))]
pub(crate) const IOC_NONE_BITS: u64 = 0;

/// `VFIO_TYPE`: the ioctl type byte, `';'`.
pub const VFIO_TYPE: u64 = b';' as u64;
/// `VFIO_BASE`: the first ioctl number VFIO uses.
pub const VFIO_BASE: u64 = 100;

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`.
pub const fn vfio_io(nr: u64) -> u64 {
    IOC_NONE_BITS | (VFIO_TYPE << 8) | (VFIO_BASE + nr)
}

/// `VFIO_API_VERSION`: the only version the kernel has ever reported.
pub const VFIO_API_VERSION: i32 = 0;

// Extensions and IOMMU types (VFIO_CHECK_EXTENSION / VFIO_SET_IOMMU arguments).
pub const VFIO_TYPE1_IOMMU: u32 = 1;
pub const VFIO_SPAPR_TCE_IOMMU: u32 = 2;
/// `VFIO_TYPE1v2_IOMMU` in vfio.h.
pub const VFIO_TYPE1V2_IOMMU: u32 = 3;
pub const VFIO_DMA_CC_IOMMU: u32 = 4;
pub const VFIO_EEH: u32 = 5;
pub const VFIO_TYPE1_NESTING_IOMMU: u32 = 6;
/// `VFIO_SPAPR_TCE_v2_IOMMU` in vfio.h.
pub const VFIO_SPAPR_TCE_V2_IOMMU: u32 = 7;
pub const VFIO_NOIOMMU_IOMMU: u32 = 8;
pub const VFIO_UNMAP_ALL: u32 = 9;
pub const VFIO_UPDATE_VADDR: u32 = 10;

// ---------------------------------------------------------------------------
// ioctl numbers

pub const VFIO_GET_API_VERSION: u64 = vfio_io(0);
pub const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
pub const VFIO_SET_IOMMU: u64 = vfio_io(2);
pub const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
pub const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
pub const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio_io(5);
pub const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
pub const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
pub const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
pub const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(9);
pub const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
pub const VFIO_DEVICE_RESET: u64 = vfio_io(11);
pub const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: u64 = vfio_io(12);
pub const VFIO_DEVICE_PCI_HOT_RESET: u64 = vfio_io(13);
pub const VFIO_IOMMU_GET_INFO: u64 = vfio_io(12);
pub const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
pub const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);
pub const VFIO_IOMMU_ENABLE: u64 = vfio_io(15);
pub const VFIO_IOMMU_DISABLE: u64 = vfio_io(16);
pub const VFIO_IOMMU_DIRTY_PAGES: u64 = vfio_io(17);

// ---------------------------------------------------------------------------
// Capability chains

/// `struct vfio_info_cap_header`: every capability starts with this; `next`
/// is an offset from the start of the INFO buffer, 0 ends the chain.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_info_cap_header {
    pub id: u16,
    pub version: u16,
    pub next: u32,
}

// ---------------------------------------------------------------------------
// Group

pub const VFIO_GROUP_FLAGS_VIABLE: u32 = 1 << 0;
pub const VFIO_GROUP_FLAGS_CONTAINER_SET: u32 = 1 << 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_group_status {
    pub argsz: u32,
    pub flags: u32,
}

// ---------------------------------------------------------------------------
// Device

pub const VFIO_DEVICE_FLAGS_RESET: u32 = 1 << 0;
pub const VFIO_DEVICE_FLAGS_PCI: u32 = 1 << 1;
pub const VFIO_DEVICE_FLAGS_PLATFORM: u32 = 1 << 2;
pub const VFIO_DEVICE_FLAGS_AMBA: u32 = 1 << 3;
pub const VFIO_DEVICE_FLAGS_CCW: u32 = 1 << 4;
pub const VFIO_DEVICE_FLAGS_AP: u32 = 1 << 5;
pub const VFIO_DEVICE_FLAGS_FSL_MC: u32 = 1 << 6;
pub const VFIO_DEVICE_FLAGS_CAPS: u32 = 1 << 7;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_device_info {
    pub argsz: u32,
    pub flags: u32,
    pub num_regions: u32,
    pub num_irqs: u32,
    pub cap_offset: u32,
}

pub const VFIO_REGION_INFO_FLAG_READ: u32 = 1 << 0;
pub const VFIO_REGION_INFO_FLAG_WRITE: u32 = 1 << 1;
pub const VFIO_REGION_INFO_FLAG_MMAP: u32 = 1 << 2;
pub const VFIO_REGION_INFO_FLAG_CAPS: u32 = 1 << 3;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_region_info {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub cap_offset: u32,
    pub size: u64,
    pub offset: u64,
}

pub const VFIO_REGION_INFO_CAP_SPARSE_MMAP: u16 = 1;
pub const VFIO_REGION_INFO_CAP_TYPE: u16 = 2;
pub const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE: u16 = 3;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_region_sparse_mmap_area {
    pub offset: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_region_info_cap_sparse_mmap {
    pub header: vfio_info_cap_header,
    pub nr_areas: u32,
    pub reserved: u32,
    pub areas: [vfio_region_sparse_mmap_area; 0],
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_region_info_cap_type {
    pub header: vfio_info_cap_header,
    pub type_: u32,
    pub subtype: u32,
}

pub const VFIO_IRQ_INFO_EVENTFD: u32 = 1 << 0;
pub const VFIO_IRQ_INFO_MASKABLE: u32 = 1 << 1;
pub const VFIO_IRQ_INFO_AUTOMASKED: u32 = 1 << 2;
pub const VFIO_IRQ_INFO_NORESIZE: u32 = 1 << 3;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_irq_info {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub count: u32,
}

pub const VFIO_IRQ_SET_DATA_NONE: u32 = 1 << 0;
pub const VFIO_IRQ_SET_DATA_BOOL: u32 = 1 << 1;
pub const VFIO_IRQ_SET_DATA_EVENTFD: u32 = 1 << 2;
pub const VFIO_IRQ_SET_ACTION_MASK: u32 = 1 << 3;
pub const VFIO_IRQ_SET_ACTION_UNMASK: u32 = 1 << 4;
pub const VFIO_IRQ_SET_ACTION_TRIGGER: u32 = 1 << 5;
pub const VFIO_IRQ_SET_DATA_TYPE_MASK: u32 =
    VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
pub const VFIO_IRQ_SET_ACTION_TYPE_MASK: u32 =
    VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;

/// `struct vfio_irq_set`; `data` is followed by `count` bools or eventfds.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_irq_set {
    pub argsz: u32,
    pub flags: u32,
    pub index: u32,
    pub start: u32,
    pub count: u32,
    pub data: [u8; 0],
}

/// One device a PCI hot reset would affect (`struct vfio_pci_dependent_device`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_pci_dependent_device {
    pub group_id: u32,
    pub segment: u16,
    pub bus: u8,
    /// PCI_SLOT/PCI_FUNC packed as the kernel does: slot << 3 | function.
    pub devfn: u8,
}

/// `struct vfio_pci_hot_reset_info`, followed by `count` dependent devices.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_pci_hot_reset_info {
    pub argsz: u32,
    pub flags: u32,
    pub count: u32,
    pub devices: [vfio_pci_dependent_device; 0],
}

/// `struct vfio_pci_hot_reset`, followed by `count` group fds.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_pci_hot_reset {
    pub argsz: u32,
    pub flags: u32,
    pub count: u32,
    pub group_fds: [i32; 0],
}

// vfio-pci's fixed region and IRQ indexes (the anonymous enums in vfio.h).
pub const VFIO_PCI_BAR0_REGION_INDEX: u32 = 0;
pub const VFIO_PCI_BAR1_REGION_INDEX: u32 = 1;
pub const VFIO_PCI_BAR2_REGION_INDEX: u32 = 2;
pub const VFIO_PCI_BAR3_REGION_INDEX: u32 = 3;
pub const VFIO_PCI_BAR4_REGION_INDEX: u32 = 4;
pub const VFIO_PCI_BAR5_REGION_INDEX: u32 = 5;
pub const VFIO_PCI_ROM_REGION_INDEX: u32 = 6;
pub const VFIO_PCI_CONFIG_REGION_INDEX: u32 = 7;
pub const VFIO_PCI_VGA_REGION_INDEX: u32 = 8;
pub const VFIO_PCI_NUM_REGIONS: u32 = 9;

pub const VFIO_PCI_INTX_IRQ_INDEX: u32 = 0;
pub const VFIO_PCI_MSI_IRQ_INDEX: u32 = 1;
pub const VFIO_PCI_MSIX_IRQ_INDEX: u32 = 2;
pub const VFIO_PCI_ERR_IRQ_INDEX: u32 = 3;
pub const VFIO_PCI_REQ_IRQ_INDEX: u32 = 4;
pub const VFIO_PCI_NUM_IRQS: u32 = 5;

/// Not in the uapi header: vfio-pci places region `i` at `i << 40` of the
/// device fd (`VFIO_PCI_OFFSET_SHIFT` in drivers/vfio/pci/vfio_pci_priv.h).
/// Callers must use the `offset` GET_REGION_INFO reports; the mock uses this
/// to report the same offsets as the kernel.
pub const VFIO_PCI_OFFSET_SHIFT: u32 = 40;
