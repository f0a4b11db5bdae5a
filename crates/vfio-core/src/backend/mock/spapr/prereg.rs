//! v2 memory preregistration (tce_iommu_register_pages,
//! tce_iommu_unregister_pages; arch/powerpc/mm/book3s64/iommu_api.c).

use super::{err, MockSpapr, Prereg};
use crate::backend::mock::pin::range_mapped;
use crate::error::Result;

impl MockSpapr {
    /// `mm_iommu_lookup` + `mm_iommu_ua_to_hpa` for one TCE.
    pub(super) fn lookup_prereg(&self, ua: u64, page_shift: u32) -> Option<usize> {
        let size = 1u64 << page_shift;
        self.prereg
            .iter()
            .position(|m| m.ua <= ua && ua.checked_add(size).is_some_and(|end| end <= m.ua + m.size))
            .filter(|&i| page_shift <= self.prereg[i].pageshift)
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
        // mm_iommu_get: the same region registered before (by any container).
        if let Some(m) = self.prereg.iter_mut().find(|m| m.ua == vaddr && m.size == size) {
            if m.in_container {
                return Err(err(libc::EBUSY, IOCTL));
            }
            m.in_container = true;
            self.enabled = true;
            return Ok(());
        }
        // mm_iommu_do_alloc: account_locked_vm first (ENOMEM), then
        // vzalloc(0) of the hpas array fails for 0 entries, then
        // pin_user_pages (EFAULT unless every page pins), and only then the
        // overlap check against the mm's regions.
        let pages = size >> self.profile.host_page_shift;
        let lock = self.mm.memlock();
        self.mm.charge(&lock, pages).map_err(|e| err(e.0, IOCTL))?;
        if size == 0 {
            return Err(err(libc::ENOMEM, IOCTL));
        }
        // A range whose first pages are mapped: the kernel returns the
        // count it pinned (positive) and registers nothing; vfio-core's
        // kernel backend turns that into EFAULT, so both backends answer
        // EFAULT at the SpaprOps seam.
        if !range_mapped(vaddr, size) {
            self.mm.uncharge(pages);
            return Err(err(libc::EFAULT, IOCTL));
        }
        if self.prereg.iter().any(|m| m.ua < vaddr + size && vaddr < m.ua + m.size) {
            self.mm.uncharge(pages);
            return Err(err(libc::EINVAL, IOCTL));
        }
        // mem->pageshift = __ffs(ua | entries << PAGE_SHIFT), then no larger
        // than the pages actually pinned (no huge pages here).
        let pageshift = (vaddr | size).trailing_zeros().min(self.profile.host_page_shift);
        self.prereg.push(Prereg { ua: vaddr, size, pageshift, mapped: 0, in_container: true });
        self.enabled = true;
        Ok(())
    }

    // tce_iommu_unregister_pages -> tce_iommu_prereg_free -> mm_iommu_put.
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
        let Some(i) = self.prereg.iter().position(|m| m.ua == vaddr && m.size == size) else {
            return Err(err(libc::ENOENT, IOCTL));
        };
        if !self.prereg[i].in_container {
            return Err(err(libc::ENOENT, IOCTL));
        }
        if self.prereg[i].mapped > 0 {
            // The container forgets the region and answers 0; the mm keeps it
            // pinned (and charged) because mm_iommu_put's EBUSY is ignored: a leak.
            self.prereg[i].in_container = false;
        } else {
            let m = self.prereg.remove(i);
            self.mm.uncharge(m.size >> self.profile.host_page_shift);
        }
        Ok(())
    }
}
