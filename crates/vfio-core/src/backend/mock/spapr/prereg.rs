//! v2 memory preregistration (tce_iommu_register_pages,
//! tce_iommu_unregister_pages, tce_iommu_prereg_free in
//! drivers/vfio/vfio_iommu_spapr_tce.c; mm_iommu_new, mm_iommu_get,
//! mm_iommu_put, mm_iommu_lookup in arch/powerpc/mm/book3s64/iommu_api.c).
//!
//! The regions live in the process's mm ([`MockMm`]), each with the
//! kernel's `used` count; a container lists the ones it registered. So a
//! second container of the process that registers the same range shares the
//! region (one pin, one charge), one overlapping it is refused, and a region
//! unregistered while TCEs still point into it is dropped from the
//! container's list while the mm keeps it: `mm_iommu_put`'s EBUSY is not
//! passed on, the ioctl answers 0, and the region stays pinned, charged and
//! findable (by a map, a register of the same range, an overlap check)
//! until the process exits, where destroy_context warns about it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{err, MmIommuMem, MockSpapr};
use crate::backend::mock::pin::{range_mapped, MockMm};
use crate::error::Result;

/// Ids for regions, unique across mock hosts (a host's regions never meet
/// another's, so one counter does).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl MockSpapr {
    fn mems<R>(&self, f: impl FnOnce(&mut Vec<MmIommuMem>) -> R) -> R {
        f(&mut self.mm.iommu_mem.lock().expect("mm lock"))
    }

    /// `mm_iommu_lookup` + `mm_iommu_ua_to_hpa` for one TCE: the mm's region
    /// holding [ua, ua + 2^page_shift) whose pages can back such a TCE.
    pub(super) fn lookup_prereg(&self, ua: u64, page_shift: u32) -> Option<u64> {
        let size = 1u64 << page_shift;
        self.mems(|mems| {
            mems.iter()
                .find(|m| m.ua <= ua && ua.checked_add(size).is_some_and(|end| end <= m.ua + m.size))
                .filter(|m| page_shift <= m.pageshift)
                .map(|m| m.id)
        })
    }

    /// `mm_iommu_mapped_inc` / `mm_iommu_mapped_dec` of region `id`.
    pub(super) fn mapped_add(&self, id: u64, delta: i64) {
        self.mems(|mems| {
            if let Some(m) = mems.iter_mut().find(|m| m.id == id) {
                m.mapped = m.mapped.saturating_add_signed(delta);
            }
        });
    }

    /// `mm_iommu_get`: the region of exactly [ua, ua + size), with one more user.
    fn mm_get(&self, ua: u64, size: u64) -> Option<u64> {
        self.mems(|mems| {
            let m = mems.iter_mut().find(|m| m.ua == ua && m.size == size)?;
            m.used += 1;
            Some(m.id)
        })
    }

    /// `mm_iommu_put`: one user fewer; the last one releases the region
    /// (unpins and uncharges it) unless TCEs still point into it (EBUSY,
    /// and the user stays).
    fn mm_put(&self, id: u64) -> std::result::Result<(), i32> {
        put(&self.mm, id, self.profile.host_page_shift)
    }

    /// `tce_iommu_prereg_free`: put the region; only when that succeeds
    /// does it leave the container's list.
    pub(super) fn prereg_free(&mut self, id: u64) -> std::result::Result<(), i32> {
        self.mm_put(id)?;
        self.prereg.retain(|&p| p != id);
        self.mems(|mems| {
            if let Some(m) = mems.iter_mut().find(|m| m.id == id) {
                m.listed -= 1;
            }
        });
        Ok(())
    }

    // tce_iommu_register_pages -> mm_iommu_get / mm_iommu_new.
    pub(super) fn register(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_REGISTER_MEMORY";
        if !self.v2 {
            return Err(err(libc::ENOTTY, IOCTL));
        }
        self.mm_set();
        if flags != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        let page = 1u64 << self.profile.host_page_shift;
        if !vaddr.is_multiple_of(page) || !size.is_multiple_of(page) || vaddr.checked_add(size).is_none() {
            return Err(err(libc::EINVAL, IOCTL));
        }
        // mm_iommu_get: the same region registered before, by this
        // container (EBUSY), by another one, or leaked by an unregister
        // while mapped: the container takes it onto its list.
        let id = if let Some(id) = self.mm_get(vaddr, size) {
            if self.prereg.contains(&id) {
                let _ = self.mm_put(id);
                return Err(err(libc::EBUSY, IOCTL));
            }
            id
        } else {
            self.mm_new(vaddr, size).map_err(|e| err(e, IOCTL))?
        };
        self.mems(|mems| {
            if let Some(m) = mems.iter_mut().find(|m| m.id == id) {
                m.listed += 1;
            }
        });
        self.prereg.push(id);
        self.enabled = true;
        Ok(())
    }

    /// `mm_iommu_new` -> `mm_iommu_do_alloc`: account_locked_vm first
    /// (ENOMEM), then vzalloc(0) of the hpas array fails for 0 entries, then
    /// pin_user_pages (EFAULT unless every page pins), and only then the
    /// overlap check against every region of the mm (EINVAL).
    fn mm_new(&self, vaddr: u64, size: u64) -> std::result::Result<u64, i32> {
        let pages = size >> self.profile.host_page_shift;
        let lock = self.mm.memlock();
        self.mm.charge(&lock, pages).map_err(|e| e.0)?;
        if size == 0 {
            return Err(libc::ENOMEM);
        }
        // A range whose first pages are mapped: the kernel returns the
        // count it pinned (positive) and registers nothing; vfio-core's
        // kernel backend turns that into EFAULT, so both backends answer
        // EFAULT at the SpaprOps seam.
        if !range_mapped(vaddr, size) {
            self.mm.uncharge(pages);
            return Err(libc::EFAULT);
        }
        // mem->pageshift = __ffs(ua | entries << PAGE_SHIFT), then no larger
        // than the pages actually pinned (no huge pages here).
        let pageshift = (vaddr | size).trailing_zeros().min(self.profile.host_page_shift);
        let added = self.mems(|mems| {
            if mems.iter().any(|m| m.ua < vaddr + size && vaddr < m.ua + m.size) {
                return None;
            }
            let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            mems.push(MmIommuMem { id, ua: vaddr, size, pageshift, used: 1, mapped: 0, listed: 0 });
            Some(id)
        });
        added.ok_or_else(|| {
            self.mm.uncharge(pages);
            libc::EINVAL
        })
    }

    // tce_iommu_unregister_pages: mm_iommu_get, tce_iommu_prereg_free if the
    // container lists the region, then mm_iommu_put, whose answer is not
    // looked at.
    pub(super) fn unregister(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY";
        if !self.v2 {
            return Err(err(libc::ENOTTY, IOCTL));
        }
        if !self.mm_set {
            return Err(err(libc::EPERM, IOCTL));
        }
        if flags != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        let page = 1u64 << self.profile.host_page_shift;
        if !vaddr.is_multiple_of(page) || !size.is_multiple_of(page) {
            return Err(err(libc::EINVAL, IOCTL));
        }
        let Some(id) = self.mm_get(vaddr, size) else {
            return Err(err(libc::ENOENT, IOCTL));
        };
        let r = if self.prereg.contains(&id) { self.prereg_free(id) } else { Err(libc::ENOENT) };
        let _ = self.mm_put(id);
        r.map_err(|e| err(e, IOCTL))
    }
}

/// `mm_iommu_put` on `mm`'s region `id` (pages of 2^`page_shift` bytes).
fn put(mm: &MockMm, id: u64, page_shift: u32) -> std::result::Result<(), i32> {
    let released = {
        let mut mems = mm.iommu_mem.lock().expect("mm lock");
        let Some(i) = mems.iter().position(|m| m.id == id) else { return Err(libc::ENOENT) };
        let m = &mut mems[i];
        if m.used == 0 {
            return Err(libc::ENOENT);
        }
        m.used -= 1;
        if m.used > 0 {
            return Ok(());
        }
        if m.mapped > 0 {
            m.used += 1;
            return Err(libc::EBUSY);
        }
        mems.remove(i).size >> page_shift
    };
    mm.uncharge(released);
    Ok(())
}
