//! An in-process model of the sPAPR TCE IOMMU driver
//! (drivers/vfio/vfio_iommu_spapr_tce.c, Linux 6.12) over a pseries PE as
//! QEMU's `spapr-pci-host-bridge` presents it to the guest kernel
//! (arch/powerpc/platforms/pseries/iommu.c). Each rule cites the function it
//! mirrors; the pseries lab holds it to the real kernel case by case.
//!
//! Known differences from the kernel, by design (as in the type1 mock):
//! - nothing is pinned: registering (v2) or mapping (v1) memory that is not
//!   mapped in this process is accepted, where `mm_iommu_do_alloc` and
//!   `tce_iommu_use_page` answer EFAULT;
//! - locked memory is not accounted (`account_locked_vm`: ENOMEM past
//!   RLIMIT_MEMLOCK without CAP_IPC_LOCK);
//! - backing pages are the profile's page size: huge pages, which let larger
//!   TCEs map (`tce_page_is_contained`), are not modelled;
//! - the calls that crash or corrupt 6.12.95 (a map or unmap running past a
//!   window's end) panic instead of answering, so a test that reaches one
//!   fails loudly; vfio-core's `TceContainer` never issues them.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

// IommuOps is named by path, not imported: its map_dma/unmap_dma would make
// MockSpapr's SpaprOps calls ambiguous wherever both traits are in scope.
use super::mock::{AttachGroup, IommuDriverOps};
use super::mock_config::{KernelVersion, MockConfig};
use super::{argsz_of, buf_bytes_mut, Errno, MockBackend, RawFd, SysResult};
use crate::error::{Error, Result};
use crate::spapr::SpaprOps;
use crate::uapi::spapr as u;
use crate::uapi::{vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, VFIO_EEH, VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU};

/// What a PE looks like to the driver: `struct iommu_table_group` plus the
/// firmware's answers to `ibm,query-pe-dma-window`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpaprProfile {
    /// `tce32_start`/`tce32_size`, from the PE's `ibm,dma-window`.
    pub tce32_start: u32,
    pub tce32_size: u32,
    /// `pgsizes`: 4 KiB plus what `ibm,query-pe-dma-window` offers.
    pub page_sizes: u64,
    /// `max_dynamic_windows_supported` (`IOMMU_TABLE_GROUP_MAX_TABLES` = 2
    /// when the firmware has windows available).
    pub max_dynamic_windows: u32,
    /// `max_levels`: pseries sets 1.
    pub levels: u32,
    /// Where the firmware places a dynamic window (QEMU's `dma64_win_addr`).
    pub ddw_start: u64,
    /// `largest_available_block` of `ibm,query-pe-dma-window`, in TCEs:
    /// `spapr_tce_create_table` refuses a window of more TCEs with EINVAL.
    pub ddw_largest_block: u64,
    /// The guest kernel's PAGE_SHIFT (12 for the 4k build, 16 for -64k).
    pub host_page_shift: u32,
    /// `eeh_enabled()` and a PE the EEH core knows.
    pub eeh: bool,
}

impl SpaprProfile {
    /// A PE behind QEMU 7.2's `spapr-pci-host-bridge` in a pseries guest
    /// running Debian's 4k-page 6.12 kernel, as the pseries lab reads it.
    pub fn qemu_pseries() -> Self {
        Self {
            tce32_start: 0,
            tce32_size: 1 << 30,
            // 4K | 64K | 2M | 16M: QEMU's default pgsz as the 6.12 guest
            // reports it (read in the pseries lab: 0x1211000).
            page_sizes: (1 << 12) | (1 << 16) | (1 << 21) | (1 << 24),
            max_dynamic_windows: 2,
            levels: 1,
            ddw_start: 1 << 59,
            // The guest's log: "ibm,query-pe-dma-windows(2026) 1000 8000000
            // 20000000 returned 0, lb=2000000000 ps=107 wn=1".
            ddw_largest_block: 1 << 37,
            host_page_shift: 12,
            eeh: false,
        }
    }
}

#[derive(Debug, Clone)]
struct Table {
    start: u64,
    size: u64,
    page_shift: u32,
    /// Default window (`is_default_window_table`) or a DDW.
    default: bool,
    /// entry index -> (user address, VFIO_DMA_MAP_FLAG_*).
    tces: BTreeMap<u64, (u64, u32)>,
}

impl Table {
    fn holds(&self, ioba: u64) -> bool {
        ioba >= self.start && ioba - self.start < self.size
    }
}

/// `struct mm_iommu_table_group_mem_t`: a preregistered region of the mm.
#[derive(Debug, Clone)]
struct Prereg {
    ua: u64,
    size: u64,
    /// `mem->pageshift`: the largest TCE it can back.
    pageshift: u32,
    /// TCEs pointing into it (`mm_iommu_mapped_inc/dec`).
    mapped: u64,
    /// On this container's `prereg_list` (false once leaked by an unregister
    /// while mapped: the mm keeps it, the container forgot it).
    in_container: bool,
}

const MAX_TABLES: usize = 2;

/// One sPAPR container of the mock.
#[derive(Debug, Clone)]
pub struct MockSpapr {
    profile: SpaprProfile,
    v2: bool,
    /// `container->group_list`; tables belong to the first group's PE, so
    /// `spapr_tce_set_window` refuses them for any other.
    groups: Vec<u32>,
    /// `container->mm` is bound (by register, create, remove or enable).
    mm_set: bool,
    /// v1: VFIO_IOMMU_ENABLE done; v2: memory was registered.
    enabled: bool,
    /// The default window is due on first use (`def_window_pending`).
    def_window_pending: bool,
    /// `container->tables[IOMMU_TABLE_GROUP_MAX_TABLES]`.
    tables: [Option<Table>; MAX_TABLES],
    /// The mm's preregistered regions (`mm->context.iommu_group_mem_list`).
    prereg: Vec<Prereg>,
}

fn err(errno: i32, ioctl: &'static str) -> Error {
    Error::new(errno, ioctl, "sPAPR container (mock)").on_spapr()
}

impl MockSpapr {
    /// `tce_iommu_open`: a container set to `VFIO_SPAPR_TCE_IOMMU` (v1) or
    /// `VFIO_SPAPR_TCE_v2_IOMMU` (v2). Groups attach afterwards.
    pub fn new(profile: SpaprProfile, v2: bool) -> Self {
        Self {
            profile,
            v2,
            groups: Vec::new(),
            mm_set: false,
            enabled: false,
            def_window_pending: false,
            tables: [None, None],
            prereg: Vec::new(),
        }
    }

    pub fn profile(&self) -> &SpaprProfile {
        &self.profile
    }

    /// `tce_iommu_attach_group` on `VFIO_GROUP_SET_CONTAINER` (or on the
    /// `VFIO_SET_IOMMU` that binds the first group).
    pub fn attach_group(&mut self, group: u32) -> Result<()> {
        const IOCTL: &str = "VFIO_GROUP_SET_CONTAINER";
        // v2 requires full support of dynamic DMA windows.
        if self.v2 && self.profile.max_dynamic_windows == 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        // v1 reuses TCE tables and does not share them among PEs.
        if !self.v2 && !self.groups.is_empty() {
            return Err(err(libc::EBUSY, IOCTL));
        }
        if self.groups.contains(&group) {
            return Err(err(libc::EBUSY, IOCTL));
        }
        // tce_iommu_take_ownership: set_window of every existing table on the
        // new PE; spapr_tce_set_window accepts only the PE's own table.
        if !self.groups.is_empty() && self.tables.iter().any(Option::is_some) {
            return Err(err(libc::EPERM, IOCTL));
        }
        // spapr_tce_take_ownership removed the PE's default window; the
        // driver recreates it on first use.
        if self.groups.is_empty() && self.tables[0].is_none() {
            self.def_window_pending = true;
        }
        self.groups.push(group);
        Ok(())
    }

    /// `tce_iommu_mm_set`: the first mm-bound call binds the container.
    fn mm_set(&mut self) {
        self.mm_set = true;
    }

    /// `tce_iommu_create_default_window`.
    fn create_default_window(&mut self) -> Result<()> {
        if !self.def_window_pending {
            return Ok(());
        }
        if self.groups.is_empty() {
            return Err(err(libc::ENODEV, "VFIO_IOMMU_MAP_DMA"));
        }
        self.create_window(12, self.profile.tce32_size as u64, 1)?;
        self.def_window_pending = false;
        Ok(())
    }

    /// `tce_iommu_create_window` -> `spapr_tce_get_table_size`,
    /// `spapr_tce_create_table`, `spapr_tce_set_window`.
    fn create_window(&mut self, page_shift: u32, window_size: u64, levels: u32) -> Result<u64> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_CREATE";
        // tce_iommu_find_free_table
        let num = self.tables.iter().position(Option::is_none).ok_or_else(|| err(libc::ENOSPC, IOCTL))?;
        if page_shift >= 64 || self.profile.page_sizes & (1u64 << page_shift) == 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        // spapr_tce_get_table_size: 0 (EINVAL) for a window under 2^(shift-3) bytes.
        if levels <= 1 && (window_size >> (page_shift - 3)) == 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        // spapr_tce_create_table
        if !window_size.is_power_of_two() || levels > 1 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        let is_default_request = window_size <= self.profile.tce32_size as u64 && page_shift == 12;
        let ddw_exists = self.tables.iter().flatten().any(|t| !t.default);
        let table = if num == 0 && is_default_request && !self.tables.iter().flatten().any(|t| t.default) {
            // restore_default_dma_window, limited to window_size.
            if ddw_exists {
                return Err(err(libc::EPERM, IOCTL));
            }
            Table { start: self.profile.tce32_start as u64, size: window_size, page_shift, default: true, tces: BTreeMap::new() }
        } else {
            if num == 0 && ddw_exists {
                return Err(err(libc::EPERM, IOCTL));
            }
            // query.largest_available_block < window TCEs: "Retry with smaller window size".
            if (window_size >> page_shift) > self.profile.ddw_largest_block {
                return Err(err(libc::EINVAL, IOCTL));
            }
            Table { start: self.profile.ddw_start, size: window_size, page_shift, default: false, tces: BTreeMap::new() }
        };
        // spapr_tce_set_window on every group: only the first PE owns the table.
        if self.groups.len() > 1 {
            return Err(err(libc::EPERM, IOCTL));
        }
        let start = table.start;
        self.tables[num] = Some(table);
        Ok(start)
    }

    /// `tce_iommu_find_table`.
    fn find_table(&self, ioba: u64) -> Option<usize> {
        self.tables.iter().position(|t| t.as_ref().is_some_and(|t| t.holds(ioba)))
    }

    /// `mm_iommu_lookup` + `mm_iommu_ua_to_hpa` for one TCE.
    fn lookup_prereg(&self, ua: u64, page_shift: u32) -> Option<usize> {
        let size = 1u64 << page_shift;
        self.prereg
            .iter()
            .position(|m| m.ua <= ua && ua + size <= m.ua + m.size)
            .filter(|&i| page_shift <= self.prereg[i].pageshift)
    }

    /// `tce_iommu_clear` of `pages` entries from `entry`, dropping each TCE's
    /// `mapped` count (`tce_iommu_unuse_page_v2`).
    fn clear(&mut self, num: usize, entry: u64, pages: u64) {
        let table = self.tables[num].as_mut().expect("a table");
        let gone: Vec<(u64, u32)> = (entry..entry + pages).filter_map(|e| table.tces.remove(&e)).collect();
        let shift = table.page_shift;
        if self.v2 {
            for (ua, _) in gone {
                if let Some(i) = self.lookup_prereg(ua, shift) {
                    self.prereg[i].mapped -= 1;
                }
            }
        }
    }

    /// The TCE behind bus address `ioba`: the user address it points at
    /// (plus the offset) and its `VFIO_DMA_MAP_FLAG_*` permission bits.
    pub fn tce_at(&self, ioba: u64) -> Option<(u64, u32)> {
        let t = self.tables.iter().flatten().find(|t| t.holds(ioba))?;
        let entry = (ioba - t.start) >> t.page_shift;
        let (ua, flags) = *t.tces.get(&entry)?;
        Some((ua + (ioba & ((1u64 << t.page_shift) - 1)), flags))
    }

    /// Regions the mm still pins although no container lists them: what an
    /// unregister while mapped leaves behind.
    pub fn leaked_registrations(&self) -> usize {
        self.prereg.iter().filter(|m| !m.in_container).count()
    }
}

impl SpaprOps for MockSpapr {
    // tce_iommu_ioctl: VFIO_IOMMU_SPAPR_TCE_GET_INFO.
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_GET_INFO";
        if self.groups.is_empty() {
            return Err(err(libc::ENXIO, IOCTL));
        }
        if argsz < u::SPAPR_TCE_INFO_MINSZ {
            return Err(err(libc::EINVAL, IOCTL));
        }
        let mut info = u::vfio_iommu_spapr_tce_info {
            argsz,
            flags: 0,
            dma32_window_start: self.profile.tce32_start,
            dma32_window_size: self.profile.tce32_size,
            ddw: Default::default(),
        };
        // The ddw part is copied back only when argsz covers it.
        if self.profile.max_dynamic_windows != 0 && self.v2 {
            info.flags |= u::VFIO_IOMMU_SPAPR_INFO_DDW;
            if argsz as usize >= std::mem::size_of::<u::vfio_iommu_spapr_tce_info>() {
                info.ddw = u::vfio_iommu_spapr_tce_ddw_info {
                    pgsizes: self.profile.page_sizes,
                    max_dynamic_windows_supported: self.profile.max_dynamic_windows,
                    levels: self.profile.levels,
                };
            }
        }
        Ok(info)
    }

    // tce_iommu_enable (v1 only; v2 falls through to ENOTTY).
    fn enable(&mut self) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_ENABLE";
        if self.v2 {
            return Err(err(libc::ENOTTY, IOCTL));
        }
        if self.enabled {
            return Err(err(libc::EBUSY, IOCTL));
        }
        if self.groups.is_empty() {
            return Err(err(libc::ENODEV, IOCTL));
        }
        if self.profile.tce32_size == 0 {
            return Err(err(libc::EPERM, IOCTL));
        }
        self.mm_set();
        self.enabled = true;
        Ok(())
    }

    // tce_iommu_disable (v1 only).
    fn disable(&mut self) -> Result<()> {
        if self.v2 {
            return Err(err(libc::ENOTTY, "VFIO_IOMMU_DISABLE"));
        }
        self.enabled = false;
        Ok(())
    }

    // tce_iommu_register_pages -> mm_iommu_get / mm_iommu_new.
    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
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
        // mm_iommu_do_alloc: vzalloc(0) of the hpas array fails for 0 entries.
        if size == 0 {
            return Err(err(libc::ENOMEM, IOCTL));
        }
        if self.prereg.iter().any(|m| m.ua < vaddr + size && vaddr < m.ua + m.size) {
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
    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
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
            // pinned because mm_iommu_put's EBUSY is ignored: a leak.
            self.prereg[i].in_container = false;
        } else {
            self.prereg.remove(i);
        }
        Ok(())
    }

    // VFIO_IOMMU_SPAPR_TCE_CREATE.
    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_CREATE";
        if !self.v2 {
            return Err(err(libc::ENOTTY, IOCTL));
        }
        self.mm_set();
        if self.groups.is_empty() {
            return Err(err(libc::ENXIO, IOCTL));
        }
        if flags != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        self.create_default_window().map_err(|e| err(e.errno, IOCTL))?;
        self.create_window(page_shift, window_size, levels)
    }

    // VFIO_IOMMU_SPAPR_TCE_REMOVE -> tce_iommu_remove_window.
    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_REMOVE";
        if !self.v2 {
            return Err(err(libc::ENOTTY, IOCTL));
        }
        self.mm_set();
        if self.groups.is_empty() {
            return Err(err(libc::ENXIO, IOCTL));
        }
        if flags != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        if self.def_window_pending && start_addr == 0 {
            self.def_window_pending = false;
            return Ok(());
        }
        let num = self.find_table(start_addr).ok_or_else(|| err(libc::EINVAL, IOCTL))?;
        let t = self.tables[num].as_ref().expect("found");
        let pages = t.size >> t.page_shift;
        self.clear(num, 0, pages);
        self.tables[num] = None;
        Ok(())
    }

    // VFIO_IOMMU_MAP_DMA -> iommu_tce_put_param_check, tce_iommu_build(_v2).
    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
        const IOCTL: &str = "VFIO_IOMMU_MAP_DMA";
        let rw = u::VFIO_DMA_MAP_FLAG_READ | u::VFIO_DMA_MAP_FLAG_WRITE;
        if !self.enabled {
            return Err(err(libc::EPERM, IOCTL));
        }
        if flags & !rw != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        self.create_default_window().map_err(|e| err(e.errno, IOCTL))?;
        let num = self.find_table(iova).ok_or_else(|| err(libc::ENXIO, IOCTL))?;
        let t = self.tables[num].as_ref().expect("found");
        let (shift, start, tsize) = (t.page_shift, t.start, t.size);
        let mask = (1u64 << shift) - 1;
        if size & mask != 0 || vaddr & mask != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        if flags & rw == 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        // iommu_tce_put_param_check is a `||` of two checks: the ioctl returns
        // its value, 1, as success-with-nothing-done.
        if iova & mask != 0 {
            return Ok(1);
        }
        let entry = (iova - start) >> shift;
        let pages = size >> shift;
        // The check passes npages = 1; a longer map runs off the table.
        assert!(
            entry + pages <= tsize >> shift,
            "VFIO_IOMMU_MAP_DMA {iova:#x}+{size:#x} runs past its window's end: Linux 6.12 oopses here \
             (tce_iommu_unuse_page_v2); vfio-core must refuse it before the call"
        );
        for i in 0..pages {
            let ua = vaddr + (i << shift);
            let found = if self.v2 {
                match self.lookup_prereg(ua, shift) {
                    Some(p) => Some(p),
                    None => {
                        self.clear(num, entry, i);
                        return Err(err(libc::EINVAL, IOCTL));
                    }
                }
            } else {
                None
            };
            // tce_page_is_contained: a TCE may not cover more than its page.
            if shift > self.profile.host_page_shift {
                self.clear(num, entry, i);
                return Err(err(libc::EPERM, IOCTL));
            }
            if let Some(p) = found {
                self.prereg[p].mapped += 1;
            }
            let old = self.tables[num].as_mut().expect("found").tces.insert(entry + i, (ua, flags & rw));
            if let (true, Some((old_ua, _))) = (self.v2, old) {
                if let Some(p) = self.lookup_prereg(old_ua, shift) {
                    self.prereg[p].mapped -= 1;
                }
            }
        }
        Ok(0)
    }

    // VFIO_IOMMU_UNMAP_DMA -> iommu_tce_clear_param_check, tce_iommu_clear.
    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
        const IOCTL: &str = "VFIO_IOMMU_UNMAP_DMA";
        if !self.enabled {
            return Err(err(libc::EPERM, IOCTL));
        }
        if flags != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        self.create_default_window().map_err(|e| err(e.errno, IOCTL))?;
        let num = self.find_table(iova).ok_or_else(|| err(libc::ENXIO, IOCTL))?;
        let t = self.tables[num].as_ref().expect("found");
        let (shift, start, tsize) = (t.page_shift, t.start, t.size);
        let mask = (1u64 << shift) - 1;
        if size & mask != 0 {
            return Err(err(libc::EINVAL, IOCTL));
        }
        // iommu_tce_clear_param_check: a misaligned IOVA -> 1 (the macro's
        // boolean, returned as is).
        let pages = size >> shift;
        if iova & mask != 0 {
            return Ok(1);
        }
        // 6.12.95 passes the page count but does not check it (the check came
        // in a later 6.12 stable, which answers 1 here); tce_iommu_clear then
        // walks TCEs and the userspace view past the table's end.
        assert!(
            ((iova - start) >> shift) + pages <= tsize >> shift,
            "VFIO_IOMMU_UNMAP_DMA {iova:#x}+{size:#x} runs past its window's end: Linux 6.12.95 walks off \
             the TCE table (tce_iommu_clear); vfio-core must refuse it before the call"
        );
        self.clear(num, (iova - start) >> shift, pages);
        Ok(0)
    }

    // tce_iommu_ioctl: VFIO_EEH_PE_OP -> vfio_spapr_ioctl_eeh_pe_op per group.
    fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        const IOCTL: &str = "VFIO_EEH_PE_OP";
        if self.groups.is_empty() {
            return Ok(0);
        }
        // eeh_iommu_group_to_pe finds no PE when EEH is off for the device.
        if !self.profile.eeh {
            return Err(err(libc::ENODEV, IOCTL));
        }
        match op {
            u::VFIO_EEH_PE_DISABLE | u::VFIO_EEH_PE_ENABLE | u::VFIO_EEH_PE_UNFREEZE_IO
            | u::VFIO_EEH_PE_UNFREEZE_DMA | u::VFIO_EEH_PE_CONFIGURE => Ok(0),
            u::VFIO_EEH_PE_GET_STATE => Ok(u::VFIO_EEH_PE_STATE_NORMAL as i32),
            u::VFIO_EEH_PE_RESET_DEACTIVATE | u::VFIO_EEH_PE_RESET_HOT | u::VFIO_EEH_PE_RESET_FUNDAMENTAL => Ok(0),
            _ => Err(err(libc::EINVAL, IOCTL)),
        }
    }
}

// ---------------------------------------------------------------------------
// The mock backend's IOMMU driver seam (struct vfio_iommu_driver_ops)

/// `tce_iommu_driver_ops` for [`super::MockBackend`]: registered in a
/// [`MockConfig`] (see [`SpaprDriver::pseries_config`]), it answers
/// `VFIO_SET_IOMMU` with sPAPR TCE v1 or v2 and backs the container with a
/// [`MockSpapr`].
#[derive(Debug, Clone)]
pub struct SpaprDriver {
    pub profile: SpaprProfile,
}

impl SpaprDriver {
    /// A pseries guest's host as the lab's kernel answered: 6.12, no
    /// vfio_iommu_type1 (POWER has none), this driver with `profile`.
    pub fn pseries_config(mut config: MockConfig, profile: SpaprProfile) -> MockConfig {
        config.kernel = KernelVersion::V6_12;
        config.type1 = false;
        config.iommu_drivers.push(Arc::new(SpaprDriver { profile }));
        config
    }
}

// tce_iommu_ioctl(NULL, VFIO_CHECK_EXTENSION): both TCE types; EEH when eeh_enabled().
fn spapr_extension(profile: &SpaprProfile, ext: u32) -> i32 {
    match ext {
        VFIO_SPAPR_TCE_IOMMU | VFIO_SPAPR_TCE_V2_IOMMU => 1,
        VFIO_EEH => profile.eeh as i32,
        _ => 0,
    }
}

impl IommuDriverOps for SpaprDriver {
    fn name(&self) -> &'static str {
        "iommu-vfio-powerpc"
    }

    fn check_extension(&self, _config: &MockConfig, extension: u32) -> i32 {
        spapr_extension(&self.profile, extension)
    }

    // tce_iommu_open: only the two TCE types, else EINVAL.
    fn open(&self, _config: &MockConfig, extension: u32) -> SysResult<Box<dyn super::mock::IommuOps>> {
        match extension {
            VFIO_SPAPR_TCE_IOMMU => Ok(Box::new(MockSpapr::new(self.profile.clone(), false))),
            VFIO_SPAPR_TCE_V2_IOMMU => Ok(Box::new(MockSpapr::new(self.profile.clone(), true))),
            _ => Err(Errno(libc::EINVAL)),
        }
    }
}

impl super::mock::IommuOps for MockSpapr {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn check_extension(&self, extension: u32) -> i32 {
        spapr_extension(&self.profile, extension)
    }

    fn attach_group(&mut self, group: &AttachGroup) -> SysResult<()> {
        MockSpapr::attach_group(self, group.id).map_err(|e| Errno(e.errno))
    }

    // tce_iommu_detach_group -> tce_iommu_release_ownership: the windows are
    // cleared and unset on the PE that leaves; with the last PE gone the
    // container holds no table.
    fn detach_group(&mut self, group: u32) {
        self.groups.retain(|&g| g != group);
        if self.groups.is_empty() {
            for num in 0..MAX_TABLES {
                if let Some(t) = &self.tables[num] {
                    let pages = t.size >> t.page_shift;
                    self.clear(num, 0, pages);
                    self.tables[num] = None;
                }
            }
        }
    }

    // VFIO_IOMMU_GET_INFO and VFIO_IOMMU_SPAPR_TCE_GET_INFO share a number:
    // the buffer gets what the sPAPR driver copies back (16 or 32 bytes).
    fn get_info(&mut self, buf: &mut [u64]) -> SysResult<()> {
        let argsz = argsz_of(buf);
        let info = self.tce_get_info(argsz).map_err(|e| Errno(e.errno))?;
        let len = if argsz as usize >= std::mem::size_of::<u::vfio_iommu_spapr_tce_info>() {
            std::mem::size_of::<u::vfio_iommu_spapr_tce_info>()
        } else {
            u::SPAPR_TCE_INFO_MINSZ as usize
        };
        let bytes = buf_bytes_mut(buf);
        if bytes.len() < len {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: `info` is a plain #[repr(C)] struct of `size_of` bytes; only
        // its first `len` <= size_of bytes are read.
        let src = unsafe { std::slice::from_raw_parts((&info as *const u::vfio_iommu_spapr_tce_info).cast::<u8>(), len) };
        bytes[..len].copy_from_slice(src);
        Ok(())
    }

    // The generic map path cannot carry the driver's positive "nothing
    // mapped" answer; it reports it as EINVAL. TceContainer uses SpaprOps.
    fn map_dma(&mut self, map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        match SpaprOps::map_dma(self, map.iova, map.vaddr, map.size, map.flags) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Errno(libc::EINVAL)),
            Err(e) => Err(Errno(e.errno)),
        }
    }

    fn unmap_dma(&mut self, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        match SpaprOps::unmap_dma(self, unmap.iova, unmap.size, unmap.flags) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Errno(libc::EINVAL)),
            Err(e) => Err(Errno(e.errno)),
        }
    }

    // What the PHB does with a device access: the TCE's page, if its
    // permission bits allow the direction.
    fn translate(&self, iova: u64, write: bool) -> Option<(u64, u64)> {
        let t = self.tables.iter().flatten().find(|t| t.holds(iova))?;
        let entry = (iova - t.start) >> t.page_shift;
        let (ua, flags) = *t.tces.get(&entry)?;
        let need = if write { u::VFIO_DMA_MAP_FLAG_WRITE } else { u::VFIO_DMA_MAP_FLAG_READ };
        if flags & need == 0 {
            return None;
        }
        let offset = iova & ((1u64 << t.page_shift) - 1);
        Some((ua + offset, (1u64 << t.page_shift) - offset))
    }
}


/// [`SpaprOps`] on a [`MockBackend`] container whose IOMMU is sPAPR: what
/// [`crate::spapr::ops_for`] returns for a mock container.
pub struct MockContainerSpapr<'a> {
    backend: &'a MockBackend,
    fd: RawFd,
}

impl<'a> MockContainerSpapr<'a> {
    pub fn new(backend: &'a MockBackend, fd: RawFd) -> Self {
        Self { backend, fd }
    }

    /// Runs `f` on the container's [`MockSpapr`]. As on the kernel: EINVAL
    /// before `VFIO_SET_IOMMU` (vfio_fops_unl_ioctl), ENOTTY when the IOMMU is
    /// not sPAPR (type1 does not know these commands).
    fn with<R>(&self, ioctl: &'static str, f: impl FnOnce(&mut MockSpapr) -> Result<R>) -> Result<R> {
        let r = self.backend.with_iommu(self.fd, |iommu| match iommu.as_any_mut().downcast_mut::<MockSpapr>() {
            Some(s) => f(s),
            None => Err(err(libc::ENOTTY, ioctl)),
        });
        match r {
            Ok(inner) => inner,
            Err(Errno(e)) => Err(err(e, ioctl)),
        }
    }
}

impl SpaprOps for MockContainerSpapr<'_> {
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
        self.with("VFIO_IOMMU_SPAPR_TCE_GET_INFO", |s| s.tce_get_info(argsz))
    }
    fn enable(&mut self) -> Result<()> {
        self.with("VFIO_IOMMU_ENABLE", |s| s.enable())
    }
    fn disable(&mut self) -> Result<()> {
        self.with("VFIO_IOMMU_DISABLE", |s| s.disable())
    }
    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.with("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", |s| s.register_memory(vaddr, size, flags))
    }
    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.with("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", |s| s.unregister_memory(vaddr, size, flags))
    }
    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
        self.with("VFIO_IOMMU_SPAPR_TCE_CREATE", |s| s.tce_create(page_shift, window_size, levels, flags))
    }
    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
        self.with("VFIO_IOMMU_SPAPR_TCE_REMOVE", |s| s.tce_remove(start_addr, flags))
    }
    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
        self.with("VFIO_IOMMU_MAP_DMA", |s| SpaprOps::map_dma(s, iova, vaddr, size, flags))
    }
    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
        self.with("VFIO_IOMMU_UNMAP_DMA", |s| SpaprOps::unmap_dma(s, iova, size, flags))
    }
    fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        self.with("VFIO_EEH_PE_OP", |s| s.eeh_pe_op(op))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RW: u32 = u::VFIO_DMA_MAP_FLAG_READ | u::VFIO_DMA_MAP_FLAG_WRITE;
    const MEM: u64 = 0x7f00_0000_0000;

    fn v2() -> MockSpapr {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        m.attach_group(1).unwrap();
        m
    }

    fn errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
        r.unwrap_err().errno
    }

    #[test]
    fn get_info_without_a_group_fails_with_enxio() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        assert_eq!(errno(m.tce_get_info(32)), libc::ENXIO);
    }

    #[test]
    fn get_info_with_argsz_below_16_fails_with_einval() {
        assert_eq!(errno(v2().tce_get_info(15)), libc::EINVAL);
    }

    #[test]
    fn get_info_reports_the_one_gib_default_window_at_zero() {
        let i = v2().tce_get_info(32).unwrap();
        assert_eq!((i.dma32_window_start, i.dma32_window_size), (0, 0x4000_0000));
    }

    #[test]
    fn get_info_on_v2_reports_ddw_with_two_windows_and_one_level() {
        let i = v2().tce_get_info(32).unwrap();
        assert_eq!(i.flags, u::VFIO_IOMMU_SPAPR_INFO_DDW);
        assert_eq!(i.ddw, u::vfio_iommu_spapr_tce_ddw_info { pgsizes: 0x1211000, max_dynamic_windows_supported: 2, levels: 1 });
    }

    #[test]
    fn get_info_with_argsz_16_sets_the_ddw_flag_but_leaves_ddw_unwritten() {
        let i = v2().tce_get_info(16).unwrap();
        assert_eq!((i.flags, i.ddw), (u::VFIO_IOMMU_SPAPR_INFO_DDW, Default::default()));
    }

    #[test]
    fn get_info_on_v1_reports_no_ddw() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        assert_eq!(m.tce_get_info(32).unwrap().flags, 0);
    }

    #[test]
    fn map_before_any_registration_on_v2_fails_with_eperm() {
        assert_eq!(errno(v2().map_dma(0, MEM, 0x1000, RW)), libc::EPERM);
    }

    #[test]
    fn register_then_map_into_the_default_window_succeeds_and_translates() {
        let mut m = v2();
        m.register_memory(MEM, 0x10000, 0).unwrap();
        assert_eq!(m.map_dma(0x2000, MEM, 0x1000, RW).unwrap(), 0);
        assert_eq!(m.tce_at(0x2010), Some((MEM + 0x10, RW)));
    }

    #[test]
    fn map_of_memory_not_registered_fails_with_einval_and_maps_nothing() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.map_dma(0, MEM, 0x2000, RW)), libc::EINVAL);
        assert_eq!(m.tce_at(0), None);
    }

    #[test]
    fn map_outside_every_window_fails_with_enxio() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.map_dma(0x4000_0000, MEM, 0x1000, RW)), libc::ENXIO);
    }

    #[test]
    fn map_with_a_misaligned_iova_returns_1_and_maps_nothing() {
        let mut m = v2();
        m.register_memory(MEM, 0x2000, 0).unwrap();
        assert_eq!(m.map_dma(0x800, MEM, 0x1000, RW).unwrap(), 1);
        assert_eq!(m.tce_at(0x800), None);
    }

    #[test]
    fn map_with_a_misaligned_size_fails_with_einval() {
        let mut m = v2();
        m.register_memory(MEM, 0x2000, 0).unwrap();
        assert_eq!(errno(m.map_dma(0, MEM, 0x800, RW)), libc::EINVAL);
    }

    #[test]
    fn map_without_read_or_write_fails_with_einval() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.map_dma(0, MEM, 0x1000, 0)), libc::EINVAL);
    }

    #[test]
    fn map_with_an_unknown_flag_fails_with_einval() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.map_dma(0, MEM, 0x1000, RW | 4)), libc::EINVAL);
    }

    #[test]
    fn map_over_a_live_tce_replaces_it() {
        let mut m = v2();
        m.register_memory(MEM, 0x2000, 0).unwrap();
        m.map_dma(0, MEM, 0x1000, RW).unwrap();
        assert_eq!(m.map_dma(0, MEM + 0x1000, 0x1000, u::VFIO_DMA_MAP_FLAG_READ).unwrap(), 0);
        assert_eq!(m.tce_at(0), Some((MEM + 0x1000, u::VFIO_DMA_MAP_FLAG_READ)));
    }

    #[test]
    #[should_panic(expected = "runs past its window's end")]
    fn map_running_past_the_window_end_is_the_kernel_oops_the_mock_refuses_to_model() {
        let mut m = v2();
        m.register_memory(MEM, 0x2000, 0).unwrap();
        let _ = m.map_dma(0x3fff_f000, MEM, 0x2000, RW);
    }

    #[test]
    #[should_panic(expected = "runs past its window's end")]
    fn unmap_running_past_the_window_end_walks_off_the_table_which_the_mock_refuses_to_model() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        let _ = m.unmap_dma(0x3fff_f000, 0x2000, 0);
    }

    #[test]
    fn unmap_at_a_misaligned_iova_returns_1() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(m.unmap_dma(0x800, 0x1000, 0).unwrap(), 1);
    }

    #[test]
    fn unmap_of_part_of_a_mapping_clears_only_those_tces() {
        let mut m = v2();
        m.register_memory(MEM, 0x2000, 0).unwrap();
        m.map_dma(0, MEM, 0x2000, RW).unwrap();
        assert_eq!(m.unmap_dma(0x1000, 0x1000, 0).unwrap(), 0);
        assert_eq!((m.tce_at(0).is_some(), m.tce_at(0x1000)), (true, None));
    }

    #[test]
    fn unmap_with_a_flag_fails_with_einval() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.unmap_dma(0, 0x1000, 1)), libc::EINVAL);
    }

    #[test]
    fn register_of_the_same_region_twice_fails_with_ebusy() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.register_memory(MEM, 0x1000, 0)), libc::EBUSY);
    }

    #[test]
    fn register_overlapping_a_region_fails_with_einval() {
        let mut m = v2();
        m.register_memory(MEM, 0x2000, 0).unwrap();
        assert_eq!(errno(m.register_memory(MEM + 0x1000, 0x2000, 0)), libc::EINVAL);
    }

    #[test]
    fn register_of_a_misaligned_address_fails_with_einval() {
        assert_eq!(errno(v2().register_memory(MEM + 0x800, 0x1000, 0)), libc::EINVAL);
    }

    #[test]
    fn register_on_v1_fails_with_enotty() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        assert_eq!(errno(m.register_memory(MEM, 0x1000, 0)), libc::ENOTTY);
    }

    #[test]
    fn unregister_before_the_container_has_an_mm_fails_with_eperm() {
        assert_eq!(errno(v2().unregister_memory(MEM, 0x1000, 0)), libc::EPERM);
    }

    #[test]
    fn unregister_of_a_region_never_registered_fails_with_enoent() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(errno(m.unregister_memory(MEM + 0x1000, 0x1000, 0)), libc::ENOENT);
    }

    #[test]
    fn unregister_while_mapped_returns_0_and_leaks_the_registration() {
        let mut m = v2();
        m.register_memory(MEM, 0x1000, 0).unwrap();
        m.map_dma(0, MEM, 0x1000, RW).unwrap();
        m.unregister_memory(MEM, 0x1000, 0).unwrap();
        assert_eq!(m.leaked_registrations(), 1);
    }

    #[test]
    fn create_of_a_64k_window_places_it_at_the_firmware_ddw_address() {
        let mut m = v2();
        assert_eq!(m.tce_create(16, 1 << 30, 1, 0).unwrap(), 1 << 59);
    }

    #[test]
    fn create_with_an_unoffered_page_size_fails_with_einval() {
        assert_eq!(errno(v2().tce_create(20, 1 << 30, 1, 0)), libc::EINVAL);
    }

    #[test]
    fn create_of_a_window_not_a_power_of_two_fails_with_einval() {
        assert_eq!(errno(v2().tce_create(16, 3 << 28, 1, 0)), libc::EINVAL);
    }

    #[test]
    fn create_with_two_levels_fails_with_einval() {
        assert_eq!(errno(v2().tce_create(16, 1 << 30, 2, 0)), libc::EINVAL);
    }

    #[test]
    fn create_of_more_tces_than_the_largest_block_fails_with_einval() {
        let mut m = MockSpapr::new(SpaprProfile { ddw_largest_block: 1 << 18, ..SpaprProfile::qemu_pseries() }, true);
        m.attach_group(1).unwrap();
        assert_eq!(errno(m.tce_create(12, 1 << 31, 1, 0)), libc::EINVAL);
    }

    #[test]
    fn create_of_a_window_twice_the_guest_ram_is_within_qemus_largest_block() {
        assert_eq!(v2().tce_create(12, 1 << 31, 1, 0).unwrap(), 1 << 59);
    }

    #[test]
    fn create_of_a_third_window_fails_with_enospc() {
        let mut m = v2();
        m.tce_create(16, 1 << 30, 1, 0).unwrap();
        assert_eq!(errno(m.tce_create(16, 1 << 30, 1, 0)), libc::ENOSPC);
    }

    #[test]
    fn create_on_v1_fails_with_enotty() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        assert_eq!(errno(m.tce_create(16, 1 << 30, 1, 0)), libc::ENOTTY);
    }

    #[test]
    fn remove_of_the_pending_default_window_then_create_of_a_small_4k_window_recreates_it_at_zero() {
        let mut m = v2();
        m.tce_remove(0, 0).unwrap();
        assert_eq!(m.tce_create(12, 1 << 28, 1, 0).unwrap(), 0);
    }

    #[test]
    fn remove_of_an_address_in_no_window_fails_with_einval() {
        let mut m = v2();
        m.tce_create(16, 1 << 30, 1, 0).unwrap();
        assert_eq!(errno(m.tce_remove(0x4000_0000, 0)), libc::EINVAL);
    }

    #[test]
    fn remove_of_a_window_clears_its_tces_and_their_registration_counts() {
        let mut m = v2();
        m.register_memory(MEM, 0x10000, 0).unwrap();
        let start = m.tce_create(16, 1 << 30, 1, 0).unwrap();
        m.map_dma(0, MEM, 0x1000, RW).unwrap();
        m.tce_remove(0, 0).unwrap();
        m.unregister_memory(MEM, 0x10000, 0).unwrap();
        assert_eq!((m.tce_at(0), m.leaked_registrations(), start), (None, 0, 1 << 59));
    }

    #[test]
    fn map_of_64k_tces_over_4k_pages_fails_with_einval() {
        let mut m = v2();
        m.register_memory(MEM, 0x20000, 0).unwrap();
        let start = m.tce_create(16, 1 << 30, 1, 0).unwrap();
        assert_eq!(errno(m.map_dma(start, MEM, 0x10000, RW)), libc::EINVAL);
    }

    #[test]
    fn a_second_group_attaches_but_then_window_creation_fails_with_eperm() {
        let mut m = v2();
        m.attach_group(2).unwrap();
        assert_eq!(errno(m.tce_create(16, 1 << 30, 1, 0)), libc::EPERM);
    }

    #[test]
    fn a_second_group_into_a_container_with_a_window_fails_with_eperm() {
        let mut m = v2();
        m.tce_create(16, 1 << 30, 1, 0).unwrap();
        assert_eq!(errno(m.attach_group(2)), libc::EPERM);
    }

    #[test]
    fn a_second_group_into_a_v1_container_fails_with_ebusy() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        assert_eq!(errno(m.attach_group(2)), libc::EBUSY);
    }

    #[test]
    fn v1_maps_after_enable_without_registration() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        m.enable().unwrap();
        assert_eq!(m.map_dma(0, MEM, 0x1000, RW).unwrap(), 0);
    }

    #[test]
    fn enable_twice_on_v1_fails_with_ebusy() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        m.enable().unwrap();
        assert_eq!(errno(m.enable()), libc::EBUSY);
    }

    #[test]
    fn enable_on_v2_fails_with_enotty() {
        assert_eq!(errno(v2().enable()), libc::ENOTTY);
    }

    #[test]
    fn eeh_pe_op_on_a_pe_without_eeh_fails_with_enodev() {
        assert_eq!(errno(v2().eeh_pe_op(u::VFIO_EEH_PE_GET_STATE)), libc::ENODEV);
    }
}
