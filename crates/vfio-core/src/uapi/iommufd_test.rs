//! IOMMUFD_TEST's selftest command (`IOMMU_TEST_CMD` on /dev/iommu), from
//! drivers/iommu/iommufd/iommufd_test.h. It is not a uapi header (no
//! `make headers_install` copy exists to check against), and only a kernel
//! built with CONFIG_IOMMUFD_TEST answers it: the lab uses it to get an
//! IOMMU with dirty tracking (the selftest "mock domain"), which QEMU's
//! emulated IOMMUs lack. Nothing outside the lab should issue it.
//!
//! The layout is the same in 6.12 and 7.2: the union's largest member is
//! `dirty` (48 bytes) in both, so `last` sits at 64 and the struct is 72
//! bytes; the op numbers used here kept their values. The test below holds
//! the offsets to the header's.

use super::iommufd::iommufd_io;

/// `_IO(IOMMUFD_TYPE, IOMMUFD_CMD_BASE + 32)`.
pub const IOMMU_TEST_CMD: u64 = iommufd_io(0x80 + 32);

pub const IOMMU_TEST_OP_MOCK_DOMAIN: u32 = 2;
pub const IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: u32 = 12;
pub const IOMMU_TEST_OP_DIRTY: u32 = 13;

/// The mock domain's aperture (both ends inclusive).
pub const MOCK_APERTURE_START: u64 = 1 << 24;
pub const MOCK_APERTURE_LAST: u64 = (1 << 31) - 1;

/// `mock_dev_create`'s flags: a device whose IOMMU reports no dirty
/// tracking (`mock_domain_capable`), one whose domains also take 1 MiB
/// pages (6.12; gone by 7.2, whose HWPT_ALLOC data asks for
/// MOCK_IOMMUPT_HUGE instead), and one with PASIDs (7.2's
/// `pasid-num-bits` property; not in 6.12).
pub const MOCK_FLAGS_DEVICE_NO_DIRTY: u32 = 1 << 0;
pub const MOCK_FLAGS_DEVICE_HUGE_IOVA: u32 = 1 << 1;
pub const MOCK_FLAGS_DEVICE_PASID: u32 = 1 << 2;

/// `IOMMU_HW_INFO_TYPE_SELFTEST` and the register value its
/// `struct iommu_test_hw_info { flags, test_reg }` carries.
pub const IOMMU_HW_INFO_TYPE_SELFTEST: u32 = 0xfeed_beef;
pub const IOMMU_HW_INFO_SELFTEST_REGVAL: u32 = 0xdead_beef;

/// `struct iommu_test_cmd`: the header, then the op's union member as raw
/// 64-bit words (read and written through the accessors below), then
/// `last`, the field iommufd_ioctl_ops' min_size ends at.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct iommu_test_cmd {
    pub size: u32,
    pub op: u32,
    pub id: u32,
    pub __reserved: u32,
    pub union: [u64; 6],
    pub last: u32,
    pub __pad: u32,
}

fn lo(w: u64) -> u32 {
    w as u32
}

fn hi(w: u64) -> u32 {
    (w >> 32) as u32
}

impl iommu_test_cmd {
    fn new(op: u32, id: u32) -> Self {
        Self { size: std::mem::size_of::<Self>() as u32, op, id, ..Default::default() }
    }

    /// IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: a mock device with `dev_flags`,
    /// bound to this iommufd and attached to `pt_id` (an IOAS or HWPT).
    pub fn mock_domain(pt_id: u32, dev_flags: u32) -> Self {
        let mut c = Self::new(IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS, pt_id);
        // mock_domain_flags { out_stdev_id, out_hwpt_id, out_idev_id, dev_flags }
        c.union[1] = (dev_flags as u64) << 32;
        c
    }

    /// The ids MOCK_DOMAIN answers: (selftest object, HWPT, iommufd device).
    pub fn mock_domain_out(&self) -> (u32, u32, u32) {
        (lo(self.union[0]), hi(self.union[0]), lo(self.union[1]))
    }

    pub fn mock_domain_flags(&self) -> u32 {
        hi(self.union[1])
    }

    /// IOMMU_TEST_OP_DIRTY on HWPT `hwpt_id`: `length` bytes from `iova`
    /// in `page_size` steps, one bit of the bitmap at `uptr` each.
    pub fn dirty(hwpt_id: u32, iova: u64, length: u64, page_size: u64, uptr: u64) -> Self {
        let mut c = Self::new(IOMMU_TEST_OP_DIRTY, hwpt_id);
        // dirty { u32 flags; (pad) iova, length, page_size, uptr, out_nr_dirty }
        c.union[1] = iova;
        c.union[2] = length;
        c.union[3] = page_size;
        c.union[4] = uptr;
        c
    }

    /// (iova, length, page_size, uptr) of a DIRTY command.
    pub fn dirty_args(&self) -> (u64, u64, u64, u64) {
        (self.union[1], self.union[2], self.union[3], self.union[4])
    }

    pub fn set_dirty_uptr(&mut self, uptr: u64) {
        self.union[4] = uptr;
    }

    /// How many pages DIRTY marked.
    pub fn dirty_out(&self) -> u64 {
        self.union[5]
    }

    pub fn set_dirty_out(&mut self, n: u64) {
        self.union[5] = n;
    }

    pub fn set_mock_domain_out(&mut self, stdev_id: u32, hwpt_id: u32, idev_id: u32) {
        self.union[0] = stdev_id as u64 | (hwpt_id as u64) << 32;
        self.union[1] = (self.union[1] & !0xffff_ffff) | idev_id as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn the_test_command_has_the_layout_of_iommufd_test_h() {
        // size, op, id, __reserved; the union at 16 (8-aligned, its
        // largest member `dirty` is u32 + pad + 5 u64 = 48 bytes); `last`
        // at 64; 72 bytes with the tail padding to 8.
        assert_eq!(offset_of!(iommu_test_cmd, union), 16);
        assert_eq!(offset_of!(iommu_test_cmd, last), 64);
        assert_eq!(size_of::<iommu_test_cmd>(), 72);
        // _IO(';', 0xa0); the direction bits differ by architecture.
        assert_eq!(IOMMU_TEST_CMD & 0xffff, 0x3ba0);
    }

    #[test]
    fn mock_domain_flags_sit_after_the_three_ids() {
        let mut c = iommu_test_cmd::mock_domain(7, MOCK_FLAGS_DEVICE_NO_DIRTY);
        assert_eq!(c.mock_domain_flags(), 1);
        c.set_mock_domain_out(4, 6, 5);
        assert_eq!(c.mock_domain_out(), (4, 6, 5));
        assert_eq!(c.mock_domain_flags(), 1);
    }
}
