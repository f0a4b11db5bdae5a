//! An in-process model of the sPAPR TCE IOMMU driver
//! (drivers/vfio/vfio_iommu_spapr_tce.c, Linux 6.12) over a pseries PE as
//! QEMU's `spapr-pci-host-bridge` presents it to the guest kernel
//! (arch/powerpc/platforms/pseries/iommu.c). Each rule cites the function it
//! mirrors; the pseries lab holds it to the real kernel case by case.
//!
//! Known differences from the kernel, by design (as in the type1 mock):
//! Pinning follows the kernel (see `backend::mock::pin`): registering (v2)
//! or mapping (v1) memory that is not mapped in this process fails with
//! EFAULT (`mm_iommu_do_alloc`, `tce_iommu_use_page`); registered memory,
//! the v1 32-bit window at ENABLE and every TCE table are charged to the
//! mm's locked_vm (`account_locked_vm`: ENOMEM past RLIMIT_MEMLOCK without
//! CAP_IPC_LOCK) and released as the kernel releases them.
//!
//! Known differences from the kernel, by design (as in the type1 mock):
//! - a mapping's protection is not checked when it is pinned (see `pin`);
//! - backing pages are the profile's page size: huge pages, which let larger
//!   TCEs map (`tce_page_is_contained`), are not modelled;
//! - the calls that crash or corrupt 6.12.95 (a map or unmap running past a
//!   window's end) get the answer of the later 6.12 stables that check the
//!   whole range: 1, with nothing done; vfio-core's `TceContainer` never
//!   issues them.

mod container;
mod driver;
mod pe;
mod prereg;
mod tce;
#[cfg(test)]
mod tests;
mod windows;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use self::container::MockContainerSpapr;
pub use self::driver::SpaprDriver;
use crate::backend::mock::pin::MockMm;
use crate::error::{Error, Result};
use crate::spapr::SpaprOps;
use crate::uapi::spapr as u;

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

/// `struct mm_iommu_table_group_mem_t`: a region preregistered in the
/// process's mm (arch/powerpc/mm/book3s64/iommu_api.c), found by every
/// container of that process. Kept in [`MockMm`]; a container lists the ids
/// of the regions on its `prereg_list`.
#[derive(Debug, Clone)]
pub(crate) struct MmIommuMem {
    id: u64,
    ua: u64,
    size: u64,
    /// `mem->pageshift`: the largest TCE it can back.
    pageshift: u32,
    /// `mem->used`: one per `mm_iommu_new`/`mm_iommu_get` not yet put.
    used: u64,
    /// TCEs pointing into it (`mm_iommu_mapped_inc/dec`; the kernel's
    /// counter is this plus one while the region lives).
    mapped: u64,
    /// Containers whose `prereg_list` holds it (not a kernel field: what
    /// tells a region leaked by an unregister while mapped, which no
    /// container lists but the mm keeps, pinned and charged, until exit).
    listed: u64,
}

const MAX_TABLES: usize = 2;

/// One sPAPR container of the mock.
#[derive(Debug)]
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
    /// `container->prereg_list`: ids of the mm's regions ([`MmIommuMem`])
    /// this container registered.
    prereg: Vec<u64>,
    /// The mm pins are charged to, and `container->locked_pages` (v1).
    mm: Arc<MockMm>,
    locked_pages: u64,
}

// tce_iommu_release: every table's TCEs cleared (tce_iommu_detach_group ->
// tce_iommu_release_ownership) and the table freed, every region still on
// the container's list put (tce_iommu_prereg_free), the v1 window's charge
// (tce_iommu_disable). A region leaked by an unregister while mapped is on
// no list: the mm keeps it, pinned and charged.
impl Drop for MockSpapr {
    fn drop(&mut self) {
        for num in 0..MAX_TABLES {
            self.free_table(num);
        }
        for id in std::mem::take(&mut self.prereg) {
            let _ = self.prereg_free(id);
        }
        self.mm.uncharge(self.locked_pages);
    }
}

fn err(errno: i32, ioctl: &'static str) -> Error {
    Error::new(errno, ioctl, "sPAPR container (mock)").on_spapr()
}

impl MockSpapr {
    /// `tce_iommu_open`: a container set to `VFIO_SPAPR_TCE_IOMMU` (v1) or
    /// `VFIO_SPAPR_TCE_v2_IOMMU` (v2). Groups attach afterwards.
    pub fn new(profile: SpaprProfile, v2: bool) -> Self {
        Self::new_in(profile, v2, Arc::new(MockMm::default()))
    }

    /// As [`MockSpapr::new`], pinning into `mm` (a mock host's process).
    pub fn new_in(profile: SpaprProfile, v2: bool, mm: Arc<MockMm>) -> Self {
        Self {
            profile,
            v2,
            groups: Vec::new(),
            mm_set: false,
            enabled: false,
            def_window_pending: false,
            tables: [None, None],
            prereg: Vec::new(),
            mm,
            locked_pages: 0,
        }
    }

    /// Pages this container has charged to its mm's locked_vm.
    pub fn locked_pages(&self) -> u64 {
        self.mm.locked_pages()
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

    /// Regions the mm still pins although no container lists them: what an
    /// unregister while mapped leaves behind.
    pub fn leaked_registrations(&self) -> usize {
        self.mm.iommu_mem.lock().expect("mm lock").iter().filter(|m| m.listed == 0).count()
    }
}

impl SpaprOps for MockSpapr {
    fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
        self.info(argsz)
    }

    fn enable(&mut self) -> Result<()> {
        self.enable_v1()
    }

    fn disable(&mut self) -> Result<()> {
        self.disable_v1()
    }

    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.register(vaddr, size, flags)
    }

    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.unregister(vaddr, size, flags)
    }

    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
        self.create(page_shift, window_size, levels, flags)
    }

    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
        self.remove(start_addr, flags)
    }

    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
        self.map(iova, vaddr, size, flags)
    }

    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
        self.unmap(iova, size, flags)
    }

    fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        self.pe_op(op)
    }
}
