//! `linux/iommufd.h` (/dev/iommu) and the VFIO device cdev part of
//! `linux/vfio.h` (`VFIO_DEVICE_BIND_IOMMUFD`, `ATTACH/DETACH_IOMMUFD_PT`).
//!
//! Every iommufd command is `_IO(';', 0x80 + n)` on the /dev/iommu fd with a
//! struct whose first `u32` is its `size`: iommufd_fops_ioctl reads that
//! size, refuses one below the command's minimum (EINVAL) and, through
//! copy_struct_from_user, one above its own struct whose extra bytes are not
//! zero (E2BIG). Checked against the lab kernel's headers (6.12, from `make
//! headers_install`) by `tests/abi.rs`; Debian's 6.1 linux-libc-dev
//! has no iommufd.h.

use super::{vfio_io, IOC_NONE_BITS, VFIO_TYPE};

/// `IOMMUFD_TYPE` is VFIO's `';'` too; commands start at `IOMMUFD_CMD_BASE`.
pub const IOMMUFD_CMD_BASE: u64 = 0x80;

/// `_IO(IOMMUFD_TYPE, nr)`.
pub const fn iommufd_io(nr: u64) -> u64 {
    IOC_NONE_BITS | (VFIO_TYPE << 8) | nr
}

pub const IOMMU_DESTROY: u64 = iommufd_io(0x80);
pub const IOMMU_IOAS_ALLOC: u64 = iommufd_io(0x81);
pub const IOMMU_IOAS_ALLOW_IOVAS: u64 = iommufd_io(0x82);
pub const IOMMU_IOAS_COPY: u64 = iommufd_io(0x83);
pub const IOMMU_IOAS_IOVA_RANGES: u64 = iommufd_io(0x84);
pub const IOMMU_IOAS_MAP: u64 = iommufd_io(0x85);
pub const IOMMU_IOAS_UNMAP: u64 = iommufd_io(0x86);
pub const IOMMU_OPTION: u64 = iommufd_io(0x87);
pub const IOMMU_VFIO_IOAS: u64 = iommufd_io(0x88);
pub const IOMMU_HWPT_ALLOC: u64 = iommufd_io(0x89);
pub const IOMMU_GET_HW_INFO: u64 = iommufd_io(0x8a);
pub const IOMMU_HWPT_SET_DIRTY_TRACKING: u64 = iommufd_io(0x8b);
pub const IOMMU_HWPT_GET_DIRTY_BITMAP: u64 = iommufd_io(0x8c);
/// Linux 6.13 (commit "iommufd: File mappings for mdev"): a mapping of a
/// memfd's pages by file offset, not by this process's addresses.
pub const IOMMU_IOAS_MAP_FILE: u64 = iommufd_io(0x8f);
/// Linux 6.13: every file mapping's pinned-page accounting moves to the
/// calling process (live update).
pub const IOMMU_IOAS_CHANGE_PROCESS: u64 = iommufd_io(0x92);

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_destroy {
    pub size: u32,
    pub id: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_alloc {
    pub size: u32,
    pub flags: u32,
    pub out_ioas_id: u32,
}

/// One IOVA range, both ends inclusive (`last`, not `end`).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_iova_range {
    pub start: u64,
    pub last: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_iova_ranges {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub __reserved: u32,
    /// User pointer to `num_iovas` [`iommu_iova_range`]s.
    pub allowed_iovas: u64,
    pub out_iova_alignment: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_allow_iovas {
    pub size: u32,
    pub ioas_id: u32,
    pub num_iovas: u32,
    pub __reserved: u32,
    pub allowed_iovas: u64,
}

pub const IOMMU_IOAS_MAP_FIXED_IOVA: u32 = 1 << 0;
pub const IOMMU_IOAS_MAP_WRITEABLE: u32 = 1 << 1;
pub const IOMMU_IOAS_MAP_READABLE: u32 = 1 << 2;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_map {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub __reserved: u32,
    pub user_va: u64,
    pub length: u64,
    pub iova: u64,
}

/// `struct iommu_ioas_map_file`: `fd` (a memfd) from byte `start`, else as
/// [`iommu_ioas_map`].
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_map_file {
    pub size: u32,
    pub flags: u32,
    pub ioas_id: u32,
    pub fd: i32,
    pub start: u64,
    pub length: u64,
    pub iova: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_change_process {
    pub size: u32,
    pub __reserved: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_copy {
    pub size: u32,
    pub flags: u32,
    pub dst_ioas_id: u32,
    pub src_ioas_id: u32,
    pub length: u64,
    pub dst_iova: u64,
    pub src_iova: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_ioas_unmap {
    pub size: u32,
    pub ioas_id: u32,
    pub iova: u64,
    pub length: u64,
}

pub const IOMMU_OPTION_RLIMIT_MODE: u32 = 0;
pub const IOMMU_OPTION_HUGE_PAGES: u32 = 1;
pub const IOMMU_OPTION_OP_SET: u16 = 0;
pub const IOMMU_OPTION_OP_GET: u16 = 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_option {
    pub size: u32,
    pub option_id: u32,
    pub op: u16,
    pub __reserved: u16,
    pub object_id: u32,
    pub val64: u64,
}

pub const IOMMU_HWPT_ALLOC_NEST_PARENT: u32 = 1 << 0;
pub const IOMMU_HWPT_ALLOC_DIRTY_TRACKING: u32 = 1 << 1;
pub const IOMMU_HWPT_DATA_NONE: u32 = 0;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_hwpt_alloc {
    pub size: u32,
    pub flags: u32,
    pub dev_id: u32,
    pub pt_id: u32,
    pub out_hwpt_id: u32,
    pub __reserved: u32,
    pub data_type: u32,
    pub data_len: u32,
    pub data_uptr: u64,
    pub fault_id: u32,
    pub __reserved2: u32,
}

pub const IOMMU_HW_INFO_TYPE_NONE: u32 = 0;
pub const IOMMU_HW_INFO_TYPE_INTEL_VTD: u32 = 1;
pub const IOMMU_HW_CAP_DIRTY_TRACKING: u64 = 1 << 0;
/// Set by GET_HW_INFO for a device that cannot use ATS (a later addition
/// than 6.12: 6.12.117 leaves the bit clear, 7.2 sets it for edu).
pub const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED: u64 = 1 << 3;

/// `struct iommu_hw_info_vtd`: the VT-d unit's capability registers.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_hw_info_vtd {
    pub flags: u32,
    pub __reserved: u32,
    pub cap_reg: u64,
    pub ecap_reg: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_hw_info {
    pub size: u32,
    pub flags: u32,
    pub dev_id: u32,
    pub data_len: u32,
    pub data_uptr: u64,
    pub out_data_type: u32,
    pub out_max_pasid_log2: u8,
    pub __reserved: [u8; 3],
    pub out_capabilities: u64,
}

pub const IOMMU_HWPT_DIRTY_TRACKING_ENABLE: u32 = 1;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_hwpt_set_dirty_tracking {
    pub size: u32,
    pub flags: u32,
    pub hwpt_id: u32,
    pub __reserved: u32,
}

pub const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR: u32 = 1;

/// How many 64-bit words of bitmap IOMMU_HWPT_GET_DIRTY_BITMAP may write
/// for `length` bytes at `page_size`, by the kernel's own arithmetic
/// (iova_bitmap_alloc: one bit per `1 << __ffs(page_size)` bytes, so a
/// page size that is not a power of two counts as its lowest set bit;
/// `mapped_total_index` = ((length - 1) >> pgshift) / 64 + 1). None for a
/// zero length or page size, which has no such bitmap.
pub fn dirty_bitmap_words(length: u64, page_size: u64) -> Option<u64> {
    if length == 0 || page_size == 0 {
        return None;
    }
    Some(((length - 1) >> page_size.trailing_zeros()) / 64 + 1)
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_hwpt_get_dirty_bitmap {
    pub size: u32,
    pub hwpt_id: u32,
    pub flags: u32,
    pub __reserved: u32,
    pub iova: u64,
    pub length: u64,
    pub page_size: u64,
    pub data: u64,
}

// ---------------------------------------------------------------------------
// VFIO device cdev (/dev/vfio/devices/vfioN), linux/vfio.h

pub const VFIO_DEVICE_BIND_IOMMUFD: u64 = vfio_io(18);
pub const VFIO_DEVICE_ATTACH_IOMMUFD_PT: u64 = vfio_io(19);
pub const VFIO_DEVICE_DETACH_IOMMUFD_PT: u64 = vfio_io(20);

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_device_bind_iommufd {
    pub argsz: u32,
    pub flags: u32,
    pub iommufd: i32,
    pub out_devid: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_device_attach_iommufd_pt {
    pub argsz: u32,
    pub flags: u32,
    pub pt_id: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_device_detach_iommufd_pt {
    pub argsz: u32,
    pub flags: u32,
}

#[cfg(test)]
mod tests {
    use super::dirty_bitmap_words;

    #[test]
    fn the_dirty_bitmap_has_a_bit_per_lowest_set_bit_of_page_size_up_to_the_last_byte() {
        assert_eq!(dirty_bitmap_words(64 * 4096, 4096), Some(1));
        assert_eq!(dirty_bitmap_words(65 * 4096, 4096), Some(2));
        // 0x3000 counts as 0x1000: 48 bits, not 16.
        assert_eq!(dirty_bitmap_words(0x30_000, 0x3000), Some(1));
        assert_eq!(dirty_bitmap_words(0x30_0000, 0x3000), Some(12));
        assert_eq!(dirty_bitmap_words(0, 4096), None);
        assert_eq!(dirty_bitmap_words(4096, 0), None);
    }
}
