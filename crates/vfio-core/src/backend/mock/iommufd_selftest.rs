//! IOMMUFD_TEST's selftest IOMMU, as Linux 6.12 answers it
//! (drivers/iommu/iommufd/selftest.c): `IOMMU_TEST_CMD` on /dev/iommu with
//! IOMMU_TEST_OP_MOCK_DOMAIN(_FLAGS), which creates a mock device, binds it
//! and attaches it to an IOAS or HWPT, and IOMMU_TEST_OP_DIRTY, which sets
//! the dirty bit of mapped entries as a device's write would. Its domains
//! are the one place a lab kernel offers dirty tracking.
//!
//! Behind an IOMMU registered without a firmware node (QEMU's VT-d) the
//! mock IOMMU never probes its devices, and MOCK_DOMAIN is EINVAL
//! (`IommufdProfile::selftest_probes`): the lab runs these cases in a
//! second guest without an IOMMU.
//!
//! The other test ops (access objects, reserved ranges, IOTLB and refcount
//! checks) are not modelled and answer EOPNOTSUPP, as the kernel answers an
//! op it does not know; nor are MOCK_FLAGS_DEVICE_HUGE_IOVA's 1 MiB pages
//! (which IOVAs the kernel maps huge depends on physical contiguity the mock
//! cannot see), so that flag is EOPNOTSUPP here too.
//!
//! 7.2 rebuilt the mock domain on the generic page table
//! (`IommufdProfile::selftest_generic_pt`; 7.2.13's selftest.c,
//! drivers/iommu/generic_pt/iommu_pt.h and fmt/amdv1.h), which answers
//! otherwise in four ways, each modelled here:
//! - DIRTY marks the entry at `iova + i * page_size` for each set bit
//!   (`set_dirty`, by IOVA: 6.12's index arithmetic is gone) and counts
//!   every set bit, whether an entry was there or not.
//! - A mapping is held in AMDv1 entries of 2 KiB items, each as large as
//!   the IOVA and physical alignment and the run allow
//!   (`pt_compute_best_pgsize`): a 4 KiB CPU page at a 4 KiB IOVA is one
//!   contiguous entry of two items. `set_dirty` marks one item; the whole
//!   entry reads as dirty (`amdv1pt_entry_is_write_dirty`) and is cleared
//!   as one (`amdv1pt_entry_make_write_clean`); and `record_dirty`
//!   reports `(end_index - index)` items of a contiguous entry, where
//!   `end_index` is its last item (or the walk's end, if that comes
//!   first): one item short of the entry when the walk covers its end.
//!   So a dirty 4 KiB page reads back as its first 2 KiB only.
//! - A read while tracking is off reports and clears what is marked: the
//!   generic page table's read_and_clear_dirty has no tracking state to
//!   check (6.12's mock driver answered EINVAL, which iommufd swallowed).
//! - Device flags: MOCK_FLAGS_DEVICE_HUGE_IOVA is unknown (EINVAL), and
//!   MOCK_FLAGS_DEVICE_PASID is known (not modelled: EOPNOTSUPP).
//!
//! Which physical pages are contiguous the mock cannot see, and iommufd
//! maps each run of contiguous pfns with one iommu_map (pages.c
//! batch_to_domain), whose entries may then span CPU pages: the mock
//! takes no two CPU pages as contiguous. The lab maps its dirty-tracking
//! cases one CPU page per IOAS mapping, so that the kernel cannot join
//! them either.

use super::super::super::{Errno, RawFd, SysResult};
use super::super::Host;
use super::{check_size, err, Dev, Domain, Driver, IommufdCtx, IommufdProfile, Obj};
use crate::uapi::iommufd_test::*;

/// MOCK_IO_PAGE_SIZE (PAGE_SIZE / 2) and the mock domain's aperture.
const MOCK_IO_PAGE_SIZE: u64 = 2048;

/// The smallest page and the aperture of a mock domain (mock_domain_alloc_paging).
pub(super) fn geometry() -> (u64, (u64, u64)) {
    (MOCK_IO_PAGE_SIZE, (MOCK_APERTURE_START, MOCK_APERTURE_LAST))
}

/// mock_domain_hw_info: `struct iommu_test_hw_info { flags = 0, test_reg }`.
pub(super) fn hw_info() -> (u32, Vec<u8>) {
    let mut data = 0u32.to_le_bytes().to_vec();
    data.extend_from_slice(&IOMMU_HW_INFO_SELFTEST_REGVAL.to_le_bytes());
    (IOMMU_HW_INFO_TYPE_SELFTEST, data)
}

/// iommufd_device_attach of a mock device (iommufd device `idev`) to
/// `pt_id`; returns the HWPT it ends up on.
fn attach(ictx: &mut IommufdCtx, idev: u32, flags: u32, pt_id: u32, profile: &IommufdProfile) -> SysResult<u32> {
    let hwpt = match ictx.objects.get(&pt_id) {
        // iommufd_device_change_pt: no such object.
        None => return err(libc::ENOENT),
        Some(Obj::Hwpt { domain, .. }) => {
            // __iommu_attach_group: a domain of another driver.
            if domain.driver != Driver::Selftest {
                return err(libc::EINVAL);
            }
            // mock_domain_nop_attach: a domain with dirty ops refuses a
            // device without dirty tracking.
            if domain.dirty_ops && flags & MOCK_FLAGS_DEVICE_NO_DIRTY != 0 {
                return err(libc::EINVAL);
            }
            pt_id
        }
        Some(Obj::Ioas(_)) => {
            // iommufd_device_auto_get_domain: an automatic mock domain on
            // the IOAS is shared (they never have dirty ops, so any mock
            // device attaches); one of the host's driver refuses (EINVAL)
            // and is passed over.
            let shared = ictx
                .objects
                .iter()
                .find(|(_, o)| matches!(o, Obj::Hwpt { ioas, auto: true, domain, .. } if *ioas == pt_id && domain.driver == Driver::Selftest))
                .map(|(&id, _)| id);
            match shared {
                Some(id) => id,
                None => {
                    // iommufd_hwpt_paging_alloc(immediate_attach): the HWPT's
                    // id first, then the domain joins the IOAS.
                    let domain = Domain::new(Driver::Selftest, profile, false);
                    let id = ictx.alloc_id();
                    ictx.ioas_mut(pt_id)?.add_domain(id, &domain)?;
                    ictx.objects.insert(id, Obj::Hwpt { ioas: pt_id, auto: true, devices: 0, domain });
                    id
                }
            }
        }
        Some(_) => return err(libc::EINVAL),
    };
    if let Some(Obj::Hwpt { devices, .. }) = ictx.objects.get_mut(&hwpt) {
        *devices += 1;
    }
    if let Some(Obj::Device { hwpt: h, .. }) = ictx.objects.get_mut(&idev) {
        *h = Some(hwpt);
    }
    Ok(hwpt)
}

/// iommufd_test_mock_domain: the selftest object's id, then the bound
/// device's, then (for an IOAS) the automatic HWPT's; on failure all go
/// again, ids included.
fn mock_domain(ictx: &mut IommufdCtx, cmd: &mut iommu_test_cmd, profile: &IommufdProfile) -> SysResult<()> {
    let flags = if cmd.op == IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS { cmd.mock_domain_flags() } else { 0 };
    let stdev = ictx.insert(Obj::Selftest { idev: 0 });
    // mock_dev_create: 6.12 knows NO_DIRTY and HUGE_IOVA, 7.2 NO_DIRTY
    // and PASID. The second of each is not modelled (EOPNOTSUPP).
    let other = if profile.selftest_generic_pt { MOCK_FLAGS_DEVICE_PASID } else { MOCK_FLAGS_DEVICE_HUGE_IOVA };
    let r = if flags & !(MOCK_FLAGS_DEVICE_NO_DIRTY | other) != 0 {
        err(libc::EINVAL)
    } else if flags & other != 0 {
        err(libc::EOPNOTSUPP)
    } else {
        Ok(())
    };
    if let Err(e) = r {
        ictx.objects.remove(&stdev);
        return Err(e);
    }
    // iommufd_device_bind: a mock device another IOMMU driver failed to
    // probe has no IOMMU, hence no IOMMU_CAP_CACHE_COHERENCY.
    if !profile.selftest_probes {
        ictx.objects.remove(&stdev);
        return err(libc::EINVAL);
    }
    let idev = ictx.insert(Obj::Device { dev: Dev::Mock { flags }, hwpt: None });
    match attach(ictx, idev, flags, cmd.id, profile) {
        Ok(hwpt) => {
            ictx.objects.insert(stdev, Obj::Selftest { idev });
            cmd.set_mock_domain_out(stdev, hwpt, idev);
            Ok(())
        }
        Err(e) => {
            ictx.objects.remove(&idev);
            ictx.objects.remove(&stdev);
            Err(e)
        }
    }
}

/// iommufd_test_dirty. 6.12: for each set bit i of the caller's bitmap,
/// the entry at index (iova + i * page_size) / page_size of the mock
/// domain gets its dirty bit, if it is mapped; answers how many were. The
/// index is in page_size units while the domain's entries are
/// MOCK_IO_PAGE_SIZE ones, so only page_size 2048 marks the page at that
/// IOVA (the selftests use nothing else); the mock follows the arithmetic
/// as it is. 7.2: `set_dirty(iova + i * page_size)` marks the item at
/// that IOVA if one is mapped there (an empty entry is ENOENT, ignored),
/// and every set bit counts.
fn dirty(ictx: &mut IommufdCtx, cmd: &mut iommu_test_cmd, bitmap: &[u64], profile: &IommufdProfile) -> SysResult<()> {
    let (iova, length, page_size, _) = cmd.dirty_args();
    // (`!uptr` is EINVAL too; here the bitmap comes as a slice.)
    if page_size == 0 || length == 0 || iova % page_size != 0 || length % page_size != 0 {
        return err(libc::EINVAL);
    }
    let max = length / page_size;
    if max > (16 << 20) * 8 {
        return err(libc::EOVERFLOW);
    }
    // get_md_pagetable: a paging HWPT (ENOENT) with a mock domain (EINVAL).
    let (ioas, domain) = ictx.hwpt(cmd.id)?;
    if domain.driver != Driver::Selftest {
        return err(libc::EINVAL);
    }
    if !domain.tracking {
        return err(libc::EINVAL);
    }
    // copy_from_user of DIV_ROUND_UP(max, 8) bytes.
    if (bitmap.len() as u64) * 8 < max.div_ceil(8) {
        return err(libc::EFAULT);
    }
    let page = domain.page;
    let mapped: Vec<(u64, u64)> = ictx.ioas(ioas)?.areas.iter().map(|(&s, a)| (s, a.last)).collect();
    let Ok(domain) = ictx.domain_mut(cmd.id) else { return err(libc::ENOENT) };
    let mut count = 0u64;
    // The set bits below max, in order.
    let bits = bitmap.iter().enumerate().flat_map(|(w, &word)| (0..64u64).filter(move |b| word & (1 << b) != 0).map(move |b| w as u64 * 64 + b));
    for i in bits.take_while(|&i| i < max) {
        // Unsigned long arithmetic: the IOVA wraps past 2^64 as in C.
        let at = iova.wrapping_add(i.wrapping_mul(page_size));
        if profile.selftest_generic_pt {
            if mapped.iter().any(|&(s, l)| at >= s && at <= l) {
                domain.dirty.insert(at / page);
            }
            count += 1;
            continue;
        }
        let index = at / page_size;
        let at = index.checked_mul(page);
        if at.is_some_and(|at| mapped.iter().any(|&(s, l)| at >= s && at <= l)) {
            domain.dirty.insert(index);
            count += 1;
        }
    }
    cmd.set_dirty_out(count);
    Ok(())
}

/// The entry of 7.2's mock domain that holds item `item` (IOVA / 2 KiB)
/// of `ioas`'s mappings: (its first item, log2 of its items). iommufd maps
/// an area one run of contiguous pfns at a time (pages.c batch_to_domain,
/// the first run from the area's page offset); the mock takes each CPU
/// page as its own run. Within a run the generic page table maps, from
/// the run's start, the largest size whose IOVA and physical address are
/// aligned to it and that fits (iommu_pt.h map_range,
/// pt_compute_best_pgsize; AMDv1 offers every power of two from the item
/// up). A run is at most a CPU page, so only the physical address within
/// its page matters, which is the user address's.
fn pt_entry_at(ioas: &super::IoasState, item: u64) -> Option<(u64, u32)> {
    let iova = item.checked_mul(MOCK_IO_PAGE_SIZE)?;
    let (start, area) = ioas.area_in(iova, iova)?;
    let page = super::PAGE_SIZE;
    let pa = |at: u64| area.uva.wrapping_add(at - start) % page;
    // The CPU page holding `iova`, cut to the area.
    let page_start = iova.saturating_sub(pa(iova));
    let run_start = start.max(page_start);
    let run_last = area.last.min(page_start.saturating_add(page - 1));
    let mut cur = run_start;
    loop {
        let mut size = page;
        while size > MOCK_IO_PAGE_SIZE && (cur % size != 0 || pa(cur) % size != 0 || cur.saturating_add(size - 1) > run_last) {
            size /= 2;
        }
        if iova < cur.saturating_add(size) {
            let lg2 = (size / MOCK_IO_PAGE_SIZE).trailing_zeros();
            return Some((cur / MOCK_IO_PAGE_SIZE, lg2));
        }
        cur += size;
    }
}

/// 7.2's read_and_clear_dirty over the contiguous pieces of mappings
/// `pieces` (first and last IOVA of each) of a mock domain: each entry
/// with a dirty item is recorded (`record(iova, length)`), and cleared
/// whole unless `clear` is false (iommu_pt.h __read_and_clear_dirty and
/// record_dirty). A contiguous entry records from the walk's position up
/// to its last item or the walk's end, whichever comes first, so the walk
/// misses an entry's last item when it covers it; a walk starting on that
/// last item records a length of 0, which iova_bitmap_set would turn into
/// a range wrapping below its IOVA: the mock records nothing there (the
/// lab's reads start on a CPU page).
pub(super) fn pt_read_and_clear(ioas: &super::IoasState, dirty: &mut std::collections::BTreeSet<u64>, pieces: &[(u64, u64)], clear: bool, mut record: impl FnMut(u64, u64)) {
    for &(first, end) in pieces {
        let (walk_first, walk_last) = (first / MOCK_IO_PAGE_SIZE, end / MOCK_IO_PAGE_SIZE);
        let mut cur = walk_first;
        while cur <= walk_last {
            let Some((entry, lg2)) = pt_entry_at(ioas, cur) else {
                cur += 1;
                continue;
            };
            let items = 1u64 << lg2;
            if dirty.range(entry..entry + items).next().is_some() {
                let len = if lg2 == 0 { 1 } else { (entry + items - 1).min(walk_last + 1) - cur };
                if len > 0 {
                    record(cur * MOCK_IO_PAGE_SIZE, len * MOCK_IO_PAGE_SIZE);
                }
                if clear {
                    for i in entry..entry + items {
                        dirty.remove(&i);
                    }
                }
            }
            cur = entry + items;
        }
    }
}

impl Host {
    // iommufd_test (CONFIG_IOMMUFD_TEST; without it the ioctl does not exist).
    pub(in super::super) fn iommufd_test(&mut self, fd: RawFd, cmd: &mut iommu_test_cmd, bitmap: &[u64]) -> SysResult<()> {
        self.ioctls += 1;
        let c = self.ictx(fd)?;
        let profile = self.profile()?;
        if !profile.selftest {
            return err(libc::ENOTTY);
        }
        check_size(cmd.size, (std::mem::offset_of!(iommu_test_cmd, last) + 4) as u32)?;
        let ictx = &mut self.ictxs[c];
        match cmd.op {
            IOMMU_TEST_OP_MOCK_DOMAIN | IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS => mock_domain(ictx, cmd, &profile),
            IOMMU_TEST_OP_DIRTY => dirty(ictx, cmd, bitmap, &profile),
            _ => Err(Errno(libc::EOPNOTSUPP)),
        }
    }
}
