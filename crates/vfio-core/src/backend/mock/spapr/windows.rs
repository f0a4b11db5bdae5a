//! DMA windows (tce_iommu_create_window, tce_iommu_remove_window and the
//! TCE_GET_INFO answer in drivers/vfio/vfio_iommu_spapr_tce.c).

use std::collections::BTreeMap;

use super::{err, MockSpapr, Table};
use crate::error::Result;
use crate::uapi::spapr as u;

impl MockSpapr {
    /// `tce_iommu_create_window` -> `spapr_tce_get_table_size`,
    /// `spapr_tce_create_table`, `spapr_tce_set_window`.
    pub(super) fn create_window(&mut self, page_shift: u32, window_size: u64, levels: u32) -> Result<u64> {
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
        // tce_iommu_create_table charges the table's size to locked_vm
        // before creating it (~0U bytes for more than one level on pseries),
        // and gives it back when creation or set_window fails.
        let table_bytes = if levels > 1 { u64::from(u32::MAX) } else { window_size >> (page_shift - 3) };
        let charged = table_bytes >> self.profile.host_page_shift;
        let lock = self.mm.memlock();
        self.mm.charge(&lock, charged).map_err(|e| err(e.0, IOCTL))?;
        let r = self.new_table(num, page_shift, window_size, levels);
        if r.is_err() {
            self.mm.uncharge(charged);
        }
        r
    }

    fn new_table(&mut self, num: usize, page_shift: u32, window_size: u64, levels: u32) -> Result<u64> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_CREATE";
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

    /// `tce_iommu_create_default_window`.
    pub(super) fn create_default_window(&mut self) -> Result<()> {
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

    // tce_iommu_ioctl: VFIO_IOMMU_SPAPR_TCE_GET_INFO.
    pub(super) fn info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
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

    // VFIO_IOMMU_SPAPR_TCE_CREATE.
    pub(super) fn create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
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
    pub(super) fn remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
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
        self.free_table(num);
        Ok(())
    }

    /// `tce_iommu_clear` of a whole table, then `tce_iommu_free_table`:
    /// its TCEs are dropped. The charge is not given back: free gives back
    /// `tbl->it_allocated_size >> PAGE_SHIFT`, which pseries'
    /// `spapr_tce_create_table` never sets, so every table created leaks
    /// its charge into locked_vm for the life of the process (the pseries
    /// lab shows it: after a few cases have made default windows, a
    /// 16-page RLIMIT_MEMLOCK refuses an 8-page registration).
    pub(super) fn free_table(&mut self, num: usize) {
        let Some(t) = &self.tables[num] else { return };
        let pages = t.size >> t.page_shift;
        self.clear(num, 0, pages);
        self.tables[num] = None;
    }

    /// `tce_iommu_find_table`.
    pub(super) fn find_table(&self, ioba: u64) -> Option<usize> {
        self.tables.iter().position(|t| t.as_ref().is_some_and(|t| t.holds(ioba)))
    }
}
