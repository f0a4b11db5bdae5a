//! One sPAPR TCE container of one PE, with the user-space checks that keep the
//! kernel safe. Every check runs before the ioctl it guards.

use std::collections::BTreeMap;

use super::ops::{DmaDirection, SpaprOps};
use super::window::{initial_levels, max_levels, DdwInfo, TceInfo, Window};
use crate::error::{Error, Result};
use crate::uapi::spapr as u;

/// The IOMMU type a container was set to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TceVersion {
    /// `VFIO_SPAPR_TCE_IOMMU`: the default window only, pages pinned per map.
    V1,
    /// `VFIO_SPAPR_TCE_v2_IOMMU`: preregistered memory and dynamic windows.
    V2,
}

/// One live mapping, as this container issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub iova: u64,
    pub vaddr: u64,
    pub size: u64,
    pub direction: DmaDirection,
}

const PAGE_SHIFT_4K: u32 = 12;

/// An sPAPR container bound to exactly one PE (IOMMU group).
pub struct TceContainer<O: SpaprOps> {
    ops: O,
    version: TceVersion,
    group: u32,
    host_page_shift: u32,
    info: TceInfo,
    windows: Vec<Window>,
    /// Preregistered memory (v2): vaddr -> size.
    registered: BTreeMap<u64, u64>,
    mappings: BTreeMap<u64, Mapping>,
}

fn refused(errno: i32, ioctl: &'static str, why: String) -> Error {
    Error::new(errno, ioctl, why).on_spapr().with_detail("refused by vfio-core before the ioctl")
}

impl<O: SpaprOps> TceContainer<O> {
    /// Takes a container whose IOMMU type is already set with `group` attached
    /// (and no other group), reads its info and, for v1, enables it. The
    /// default 32-bit window is known from the info: on v2 the kernel creates
    /// it lazily at the first map, unmap or window call
    /// (`tce_iommu_create_default_window`), at `dma32_window_start`.
    pub fn new(mut ops: O, version: TceVersion, group: u32, host_page_shift: u32) -> Result<Self> {
        let raw = ops.tce_get_info(std::mem::size_of::<u::vfio_iommu_spapr_tce_info>() as u32)?;
        let ddw = (raw.flags & u::VFIO_IOMMU_SPAPR_INFO_DDW != 0).then_some(DdwInfo {
            page_sizes: raw.ddw.pgsizes,
            max_windows: raw.ddw.max_dynamic_windows_supported,
            levels: raw.ddw.levels,
        });
        let info = TceInfo {
            dma32_start: raw.dma32_window_start as u64,
            dma32_size: raw.dma32_window_size as u64,
            ddw,
        };
        if version == TceVersion::V1 {
            ops.enable()?;
        }
        let windows = if info.dma32_size > 0 {
            vec![Window { start: info.dma32_start, size: info.dma32_size, page_shift: PAGE_SHIFT_4K }]
        } else {
            Vec::new()
        };
        Ok(Self {
            ops,
            version,
            group,
            host_page_shift,
            info,
            windows,
            registered: BTreeMap::new(),
            mappings: BTreeMap::new(),
        })
    }

    pub fn info(&self) -> TceInfo {
        self.info
    }

    pub fn version(&self) -> TceVersion {
        self.version
    }

    pub fn group(&self) -> u32 {
        self.group
    }

    pub fn windows(&self) -> &[Window] {
        &self.windows
    }

    pub fn mappings(&self) -> impl Iterator<Item = &Mapping> {
        self.mappings.values()
    }

    /// The backend, for calls this layer does not wrap (conformance runs).
    pub fn ops_mut(&mut self) -> &mut O {
        &mut self.ops
    }

    /// One PE per container: a second group attached to an sPAPR container
    /// makes every later window or map fail with EPERM (`spapr_tce_set_window`
    /// refuses a table it did not create), or fails itself with EPERM when a
    /// window exists. Call before `VFIO_GROUP_SET_CONTAINER` of another group.
    pub fn admit_group(&self, group: u32) -> Result<()> {
        if group == self.group {
            return Ok(());
        }
        Err(refused(
            libc::EPERM,
            "VFIO_GROUP_SET_CONTAINER",
            format!(
                "group {group} into the sPAPR container of group {}: one PE per container; open a container for group {group}",
                self.group
            ),
        ))
    }

    fn need_v2(&self, ioctl: &'static str) -> Result<()> {
        match self.version {
            TceVersion::V2 => Ok(()),
            TceVersion::V1 => Err(refused(
                libc::ENOTTY,
                ioctl,
                "a VFIO_SPAPR_TCE_IOMMU (v1) container has no such call; set VFIO_SPAPR_TCE_v2_IOMMU".into(),
            )),
        }
    }

    /// `VFIO_IOMMU_SPAPR_REGISTER_MEMORY`: pins `[vaddr, vaddr + size)` for
    /// maps (v2). `tce_iommu_register_pages` wants host-page alignment;
    /// `mm_iommu_do_alloc` refuses an overlap with EINVAL and `mm_iommu_get`
    /// an exact repeat with EBUSY: both are answered here without the call.
    pub fn register(&mut self, vaddr: u64, size: u64) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_REGISTER_MEMORY";
        self.need_v2(IOCTL)?;
        let page = 1u64 << self.host_page_shift;
        if size == 0 || !vaddr.is_multiple_of(page) || !size.is_multiple_of(page) || vaddr.checked_add(size).is_none() {
            return Err(refused(
                libc::EINVAL,
                IOCTL,
                format!("memory {vaddr:#x}+{size:#x}: vaddr and size must be non-zero multiples of the {page:#x}-byte host page"),
            ));
        }
        if let Some((&v, &s)) = self.registered.iter().find(|(&v, &s)| v < vaddr + size && vaddr < v + s) {
            let errno = if v == vaddr && s == size { libc::EBUSY } else { libc::EINVAL };
            return Err(refused(
                errno,
                IOCTL,
                format!("memory {vaddr:#x}+{size:#x} overlaps registered memory {v:#x}+{s:#x}; unregister that first"),
            ));
        }
        self.ops.register_memory(vaddr, size, 0)?;
        self.registered.insert(vaddr, size);
        Ok(())
    }

    /// `VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY` of a region registered as is.
    /// Refused while any mapping uses the region: the kernel would return 0
    /// and leak the registration (`tce_iommu_unregister_pages` drops the
    /// container's reference even when `mm_iommu_put` finds it mapped).
    pub fn unregister(&mut self, vaddr: u64, size: u64) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY";
        self.need_v2(IOCTL)?;
        if self.registered.get(&vaddr) != Some(&size) {
            return Err(refused(
                libc::ENOENT,
                IOCTL,
                format!("memory {vaddr:#x}+{size:#x} was not registered as one region"),
            ));
        }
        if let Some(m) = self.mappings.values().find(|m| m.vaddr < vaddr + size && vaddr < m.vaddr + m.size) {
            return Err(refused(
                libc::EBUSY,
                IOCTL,
                format!(
                    "memory {vaddr:#x}+{size:#x} is still mapped at IOVA {:#x}+{:#x}; unmap it first",
                    m.iova, m.size
                ),
            ));
        }
        self.ops.unregister_memory(vaddr, size, 0)?;
        self.registered.remove(&vaddr);
        Ok(())
    }

    /// `VFIO_IOMMU_SPAPR_TCE_CREATE`: a dynamic window of `window_size` bytes
    /// in TCEs of `1 << page_shift` bytes, placed by the platform. Levels
    /// follow QEMU's `vfio_spapr_create_window`: start from the estimate and
    /// retry with one more level up to its maximum, bounded by the levels the
    /// PE reports.
    pub fn create_window(&mut self, page_shift: u32, window_size: u64) -> Result<Window> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_CREATE";
        self.need_v2(IOCTL)?;
        let ddw = self.info.ddw.ok_or_else(|| {
            refused(libc::EPERM, IOCTL, format!("group {}: the PE reports no dynamic DMA windows", self.group))
        })?;
        if page_shift >= 64 || ddw.page_sizes & (1u64 << page_shift) == 0 {
            return Err(refused(
                libc::EINVAL,
                IOCTL,
                format!("TCE page shift {page_shift}: the PE offers page sizes {:#x}", ddw.page_sizes),
            ));
        }
        // spapr_tce_create_table (pseries) and pnv_pci_ioda2_table_alloc_pages
        // (powernv) take only power-of-two windows of whole TCEs.
        if !window_size.is_power_of_two() || window_size < (1u64 << page_shift) {
            return Err(refused(
                libc::EINVAL,
                IOCTL,
                format!("window size {window_size:#x}: must be a power of two of at least one {:#x}-byte TCE", 1u64 << page_shift),
            ));
        }
        // IOMMU_TABLE_GROUP_MAX_TABLES windows per PE: the default one counts.
        let slots = ddw.max_windows.max(1) as usize;
        if self.windows.len() >= slots {
            return Err(refused(
                libc::ENOSPC,
                IOCTL,
                format!("group {}: all {slots} windows exist; remove one first", self.group),
            ));
        }
        // A PE that reports `levels` (pseries: 1, `spapr_tce_create_table`
        // refuses more) bounds both ends: QEMU's estimate can exceed it for
        // large windows of small TCEs.
        let mut first = initial_levels(page_shift, window_size, self.host_page_shift);
        let mut last = max_levels(page_shift, self.host_page_shift).max(first);
        if ddw.levels > 0 {
            first = first.min(ddw.levels);
            last = last.min(ddw.levels);
        }
        let mut first_error = None;
        for levels in first..=last {
            match self.ops.tce_create(page_shift, window_size, levels, 0) {
                Ok(start) => {
                    let w = Window { start, size: window_size, page_shift };
                    self.windows.push(w);
                    return Ok(w);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.expect("at least one attempt"))
    }

    /// `VFIO_IOMMU_SPAPR_TCE_REMOVE` of the window starting at `start`. The
    /// kernel clears the window's TCEs itself (`tce_iommu_remove_window`), so
    /// the mappings inside it are forgotten here.
    pub fn remove_window(&mut self, start: u64) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_SPAPR_TCE_REMOVE";
        self.need_v2(IOCTL)?;
        let Some(pos) = self.windows.iter().position(|w| w.start == start) else {
            return Err(refused(libc::EINVAL, IOCTL, format!("no window starts at {start:#x}")));
        };
        self.ops.tce_remove(start, 0)?;
        let w = self.windows.remove(pos);
        self.mappings.retain(|_, m| !w.holds(m.iova));
        Ok(())
    }

    fn window_for(&self, ioctl: &'static str, iova: u64, size: u64) -> Result<Window> {
        let Some(w) = self.windows.iter().find(|w| w.holds(iova)).copied() else {
            return Err(refused(
                libc::ENXIO,
                ioctl,
                format!("IOVA {iova:#x} lies in no DMA window of group {}; windows: {}", self.group, self.describe_windows()),
            ));
        };
        if !w.contains_range(iova, size) {
            return Err(refused(
                libc::ERANGE,
                ioctl,
                format!(
                    "IOVA {iova:#x}+{size:#x} runs past the end of window {:#x}-{:#x}; split it at the window end",
                    w.start,
                    w.start.wrapping_add(w.size)
                ),
            ));
        }
        Ok(w)
    }

    fn describe_windows(&self) -> String {
        let parts: Vec<String> =
            self.windows.iter().map(|w| format!("{:#x}+{:#x}", w.start, w.size)).collect();
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(", ")
        }
    }

    /// `VFIO_IOMMU_MAP_DMA` of `[vaddr, vaddr + size)` at `iova`. Refused
    /// before the call: a range not wholly inside one window, addresses or
    /// size not multiples of the window's TCE size, an overlap with a live
    /// mapping (the kernel would silently replace the TCEs through
    /// `iommu_tce_xchg_no_kill` and the old pages' accounting would be lost
    /// to this container), and on v2 memory not preregistered
    /// (`tce_iommu_prereg_ua_to_hpa` answers EINVAL).
    pub fn map(&mut self, iova: u64, vaddr: u64, size: u64, direction: DmaDirection) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_MAP_DMA";
        if size == 0 {
            return Err(refused(libc::EINVAL, IOCTL, format!("IOVA {iova:#x}: size 0")));
        }
        let w = self.window_for(IOCTL, iova, size)?;
        let page = w.page_size();
        if !iova.is_multiple_of(page) || !vaddr.is_multiple_of(page) || !size.is_multiple_of(page) {
            return Err(refused(
                libc::EINVAL,
                IOCTL,
                format!("IOVA {iova:#x}, vaddr {vaddr:#x}, size {size:#x}: all must be multiples of the window's {page:#x}-byte TCE"),
            ));
        }
        if let Some(m) = self.overlapping(iova, iova + size).next() {
            return Err(refused(
                libc::EEXIST,
                IOCTL,
                format!("IOVA {iova:#x}+{size:#x} overlaps the mapping at {:#x}+{:#x}; unmap it first", m.iova, m.size),
            ));
        }
        if self.version == TceVersion::V2 && !self.is_registered(vaddr, size) {
            return Err(refused(
                libc::EINVAL,
                IOCTL,
                format!("vaddr {vaddr:#x}+{size:#x} is not preregistered; call register() first"),
            ));
        }
        let value = self.ops.map_dma(iova, vaddr, size, direction.flags())?;
        if value != 0 {
            return Err(Error::new(libc::EINVAL, IOCTL, format!("IOVA {iova:#x}+{size:#x}: the kernel returned {value}, nothing mapped")).on_spapr());
        }
        self.mappings.insert(iova, Mapping { iova, vaddr, size, direction });
        Ok(())
    }

    /// The live mappings that intersect `[start, end)`, in IOVA order, found
    /// in O(log n + k): mappings never overlap, so only the one starting
    /// before `start` can reach into the range from the left.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = &Mapping> {
        let left = self.mappings.range(..start).next_back().map(|(_, m)| m).filter(|m| m.iova + m.size > start);
        left.into_iter().chain(self.mappings.range(start..end).map(|(_, m)| m))
    }

    fn is_registered(&self, vaddr: u64, size: u64) -> bool {
        // mm_iommu_lookup checks each TCE against one region; adjacent regions
        // together cover a range too.
        let mut at = vaddr;
        let end = vaddr + size;
        while at < end {
            match self.registered.range(..=at).next_back() {
                Some((&v, &s)) if at < v + s => at = v + s,
                _ => return false,
            }
        }
        true
    }

    /// `VFIO_IOMMU_UNMAP_DMA` of `[iova, iova + size)`, inside one window.
    /// sPAPR clears TCE by TCE, so part of a mapping may be unmapped; what
    /// remains stays tracked.
    pub fn unmap(&mut self, iova: u64, size: u64) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_UNMAP_DMA";
        if size == 0 {
            return Err(refused(libc::EINVAL, IOCTL, format!("IOVA {iova:#x}: size 0")));
        }
        let w = self.window_for(IOCTL, iova, size)?;
        let page = w.page_size();
        if !iova.is_multiple_of(page) || !size.is_multiple_of(page) {
            return Err(refused(
                libc::EINVAL,
                IOCTL,
                format!("IOVA {iova:#x}, size {size:#x}: must be multiples of the window's {page:#x}-byte TCE"),
            ));
        }
        let value = self.ops.unmap_dma(iova, size, 0)?;
        if value != 0 {
            return Err(Error::new(libc::EINVAL, IOCTL, format!("IOVA {iova:#x}+{size:#x}: the kernel returned {value}, nothing unmapped")).on_spapr());
        }
        let end = iova + size;
        let hit: Vec<Mapping> = self.overlapping(iova, end).copied().collect();
        for m in hit {
            self.mappings.remove(&m.iova);
            if m.iova < iova {
                self.mappings.insert(m.iova, Mapping { size: iova - m.iova, ..m });
            }
            let m_end = m.iova + m.size;
            if m_end > end {
                let cut = end - m.iova;
                self.mappings.insert(end, Mapping { iova: end, vaddr: m.vaddr + cut, size: m_end - end, ..m });
            }
        }
        Ok(())
    }

    /// `VFIO_EEH_PE_OP` (`vfio_spapr_ioctl_eeh_pe_op`): ENODEV where the PE has no EEH.
    pub fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
        self.ops.eeh_pe_op(op)
    }

    /// Unmaps everything, then unregisters everything: the order the kernel
    /// needs to give registrations back (`mm_iommu_put` with mappings leaks).
    pub fn release(&mut self) -> Result<()> {
        let maps: Vec<Mapping> = self.mappings.values().copied().collect();
        for m in maps {
            self.unmap(m.iova, m.size)?;
        }
        let regs: Vec<(u64, u64)> = self.registered.iter().map(|(&v, &s)| (v, s)).collect();
        for (v, s) in regs {
            self.unregister(v, s)?;
        }
        Ok(())
    }
}

impl<O: SpaprOps> Drop for TceContainer<O> {
    fn drop(&mut self) {
        // Best effort: the fd's release clears everything too, but in the
        // order the kernel wants only if we do it here.
        let _ = self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::mock::spapr::{MockSpapr, SpaprProfile};

    fn mem() -> u64 {
        crate::memory::test_va()
    }

    fn v2() -> TceContainer<MockSpapr> {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        m.attach_group(1).unwrap();
        TceContainer::new(m, TceVersion::V2, 1, 12).unwrap()
    }

    fn refused_errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
        let e = r.unwrap_err();
        assert_eq!(e.detail.as_deref(), Some("refused by vfio-core before the ioctl"), "{e}");
        e.errno
    }

    #[test]
    fn the_default_window_is_known_from_the_info() {
        assert_eq!(v2().windows(), &[Window { start: 0, size: 1 << 30, page_shift: 12 }]);
    }

    #[test]
    fn a_map_running_past_the_window_end_is_refused_with_erange_before_the_kernel() {
        let mut c = v2();
        c.register(mem(), 0x2000).unwrap();
        // The mock panics if this reaches it, as 6.12 oopses.
        assert_eq!(refused_errno(c.map(0x3fff_f000, mem(), 0x2000, DmaDirection::Bidirectional)), libc::ERANGE);
    }

    #[test]
    fn an_unmap_running_past_the_window_end_is_refused_with_erange() {
        let mut c = v2();
        assert_eq!(refused_errno(c.unmap(0x3fff_f000, 0x2000)), libc::ERANGE);
    }

    #[test]
    fn a_map_in_no_window_is_refused_with_enxio() {
        let mut c = v2();
        c.register(mem(), 0x1000).unwrap();
        assert_eq!(refused_errno(c.map(1 << 40, mem(), 0x1000, DmaDirection::ToDevice)), libc::ENXIO);
    }

    #[test]
    fn a_map_of_unregistered_memory_is_refused_with_einval() {
        let mut c = v2();
        c.register(mem(), 0x1000).unwrap();
        assert_eq!(refused_errno(c.map(0, mem(), 0x2000, DmaDirection::ToDevice)), libc::EINVAL);
    }

    #[test]
    fn a_map_across_two_adjacent_registrations_is_issued() {
        let mut c = v2();
        c.register(mem(), 0x1000).unwrap();
        c.register(mem() + 0x1000, 0x1000).unwrap();
        c.map(0, mem(), 0x2000, DmaDirection::Bidirectional).unwrap();
        assert_eq!(c.ops_mut().tce_at(0x1000), Some((mem() + 0x1000, 3)));
    }

    #[test]
    fn a_map_overlapping_a_live_mapping_is_refused_with_eexist() {
        let mut c = v2();
        c.register(mem(), 0x2000).unwrap();
        c.map(0, mem(), 0x2000, DmaDirection::Bidirectional).unwrap();
        assert_eq!(refused_errno(c.map(0x1000, mem(), 0x1000, DmaDirection::Bidirectional)), libc::EEXIST);
    }

    #[test]
    fn a_map_misaligned_to_the_tce_size_is_refused_with_einval() {
        let mut c = v2();
        c.register(mem(), 0x2000).unwrap();
        assert_eq!(refused_errno(c.map(0x800, mem(), 0x1000, DmaDirection::Bidirectional)), libc::EINVAL);
    }

    #[test]
    fn unregister_while_mapped_is_refused_with_ebusy() {
        let mut c = v2();
        c.register(mem(), 0x1000).unwrap();
        c.map(0, mem(), 0x1000, DmaDirection::FromDevice).unwrap();
        assert_eq!(refused_errno(c.unregister(mem(), 0x1000)), libc::EBUSY);
    }

    #[test]
    fn unregister_after_unmap_leaks_nothing() {
        let mut c = v2();
        c.register(mem(), 0x1000).unwrap();
        c.map(0, mem(), 0x1000, DmaDirection::FromDevice).unwrap();
        c.unmap(0, 0x1000).unwrap();
        c.unregister(mem(), 0x1000).unwrap();
        assert_eq!(c.ops_mut().leaked_registrations(), 0);
    }

    #[test]
    fn release_unmaps_before_it_unregisters() {
        let mut c = v2();
        c.register(mem(), 0x2000).unwrap();
        c.map(0, mem(), 0x2000, DmaDirection::Bidirectional).unwrap();
        c.release().unwrap();
        assert_eq!((c.ops_mut().leaked_registrations(), c.mappings().count()), (0, 0));
    }

    #[test]
    fn a_partial_unmap_keeps_the_rest_of_the_mapping_tracked() {
        let mut c = v2();
        c.register(mem(), 0x3000).unwrap();
        c.map(0, mem(), 0x3000, DmaDirection::Bidirectional).unwrap();
        c.unmap(0x1000, 0x1000).unwrap();
        let left: Vec<(u64, u64, u64)> = c.mappings().map(|m| (m.iova, m.vaddr, m.size)).collect();
        assert_eq!(left, vec![(0, mem(), 0x1000), (0x2000, mem() + 0x2000, 0x1000)]);
    }

    #[test]
    fn a_second_group_is_refused_with_eperm() {
        assert_eq!(refused_errno(v2().admit_group(2)), libc::EPERM);
    }

    #[test]
    fn a_64_bit_window_lands_at_the_ddw_address_and_takes_maps() {
        let mut c = v2();
        let w = c.create_window(12, 1 << 31).unwrap();
        c.register(mem(), 0x1000).unwrap();
        c.map(w.start, mem(), 0x1000, DmaDirection::Bidirectional).unwrap();
        assert_eq!((w.start, c.ops_mut().tce_at(1 << 59)), (1 << 59, Some((mem(), 3))));
    }

    #[test]
    fn a_window_with_an_unoffered_page_size_is_refused_with_einval() {
        assert_eq!(refused_errno(v2().create_window(20, 1 << 30)), libc::EINVAL);
    }

    #[test]
    fn a_window_not_a_power_of_two_is_refused_with_einval() {
        assert_eq!(refused_errno(v2().create_window(16, 3 << 28)), libc::EINVAL);
    }

    #[test]
    fn a_third_window_is_refused_with_enospc() {
        let mut c = v2();
        c.create_window(16, 1 << 30).unwrap();
        assert_eq!(refused_errno(c.create_window(16, 1 << 30)), libc::ENOSPC);
    }

    #[test]
    fn removing_a_window_forgets_its_mappings() {
        let mut c = v2();
        let w = c.create_window(12, 1 << 30).unwrap();
        c.register(mem(), 0x1000).unwrap();
        c.map(w.start, mem(), 0x1000, DmaDirection::Bidirectional).unwrap();
        c.remove_window(w.start).unwrap();
        assert_eq!((c.mappings().count(), c.windows().len()), (0, 1));
    }

    /// A PE that offers 3 levels but whose tables cannot be allocated in
    /// fewer than 3 (as on a fragmented powernv host): `create` fails until
    /// then. Everything else is the mock's.
    struct NeedsLevels {
        inner: MockSpapr,
        tried: Vec<u32>,
    }

    impl SpaprOps for NeedsLevels {
        fn tce_get_info(&mut self, argsz: u32) -> Result<u::vfio_iommu_spapr_tce_info> {
            let mut i = self.inner.tce_get_info(argsz)?;
            i.ddw.levels = 3;
            Ok(i)
        }
        fn enable(&mut self) -> Result<()> {
            self.inner.enable()
        }
        fn disable(&mut self) -> Result<()> {
            self.inner.disable()
        }
        fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
            self.inner.register_memory(vaddr, size, flags)
        }
        fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> Result<()> {
            self.inner.unregister_memory(vaddr, size, flags)
        }
        fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> Result<u64> {
            self.tried.push(levels);
            if levels < 3 {
                return Err(Error::new(libc::ENOMEM, "VFIO_IOMMU_SPAPR_TCE_CREATE", "test PE"));
            }
            self.inner.tce_create(page_shift, window_size, 1, flags)
        }
        fn tce_remove(&mut self, start_addr: u64, flags: u32) -> Result<()> {
            self.inner.tce_remove(start_addr, flags)
        }
        fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<i32> {
            self.inner.map_dma(iova, vaddr, size, flags)
        }
        fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> Result<i32> {
            self.inner.unmap_dma(iova, size, flags)
        }
        fn eeh_pe_op(&mut self, op: u32) -> Result<i32> {
            self.inner.eeh_pe_op(op)
        }
    }

    fn needs_levels() -> TceContainer<NeedsLevels> {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        m.attach_group(1).unwrap();
        TceContainer::new(NeedsLevels { inner: m, tried: Vec::new() }, TceVersion::V2, 1, 12).unwrap()
    }

    #[test]
    fn create_window_retries_with_one_more_level_until_the_pe_takes_it() {
        let mut c = needs_levels();
        c.create_window(16, 1 << 30).unwrap();
        // 2^14 TCEs * 8 bytes = 2^17 bytes: one level by QEMU's estimate, then 2, then 3.
        assert_eq!(c.ops_mut().tried, vec![1, 2, 3]);
    }

    #[test]
    fn create_window_gives_up_after_the_levels_the_pe_reports_with_the_first_error() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
        m.attach_group(1).unwrap();
        let mut c = TceContainer::new(NeedsLevels { inner: m, tried: Vec::new() }, TceVersion::V2, 1, 12).unwrap();
        c.info.ddw = c.info.ddw.map(|d| DdwInfo { levels: 2, ..d });
        let e = c.create_window(16, 1 << 30).unwrap_err();
        assert_eq!((e.errno, c.ops_mut().tried.clone()), (libc::ENOMEM, vec![1, 2]));
    }

    #[test]
    fn v1_has_no_preregistration() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        let mut c = TceContainer::new(m, TceVersion::V1, 1, 12).unwrap();
        assert_eq!(refused_errno(c.register(mem(), 0x1000)), libc::ENOTTY);
    }

    #[test]
    fn v1_maps_into_the_default_window_without_registration() {
        let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
        m.attach_group(1).unwrap();
        let mut c = TceContainer::new(m, TceVersion::V1, 1, 12).unwrap();
        c.map(0x1000, mem(), 0x1000, DmaDirection::ToDevice).unwrap();
        assert_eq!(c.ops_mut().tce_at(0x1000), Some((mem(), 1)));
    }
}

#[cfg(test)]
mod properties {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::backend::mock::spapr::{MockSpapr, SpaprProfile};

    const PAGES: u64 = 64;
    fn mem() -> u64 {
        crate::memory::test_va()
    }

    #[derive(Debug, Clone)]
    enum Op {
        Map { page: u64, pages: u64 },
        Unmap { page: u64, pages: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        // Pages up to a few past the window's end, so range refusals happen.
        prop_oneof![
            (0..PAGES + 4, 1..5u64).prop_map(|(page, pages)| Op::Map { page, pages }),
            (0..PAGES + 4, 1..5u64).prop_map(|(page, pages)| Op::Unmap { page, pages }),
        ]
    }

    proptest! {
        /// Random maps and unmaps, some past the window's end, against a plain
        /// page table: the same calls succeed, the mock's TCEs are exactly the
        /// model's after each step, and no call past the end reaches the mock
        /// (which panics on it, as 6.12 oopses).
        #[test]
        fn tce_container_and_the_mock_match_a_page_table(ops in proptest::collection::vec(op(), 1..40)) {
            let profile = SpaprProfile { tce32_size: (PAGES << 12) as u32, ..SpaprProfile::qemu_pseries() };
            let mut m = MockSpapr::new(profile, true);
            m.attach_group(1).unwrap();
            let mut c = TceContainer::new(m, TceVersion::V2, 1, 12).unwrap();
            c.register(mem(), (PAGES + 8) << 12).unwrap();
            let mut model: BTreeMap<u64, u64> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Map { page, pages } => {
                        let inside = page + pages <= PAGES;
                        let free = (page..page + pages).all(|p| !model.contains_key(&p));
                        let r = c.map(page << 12, mem() + (page << 12), pages << 12, DmaDirection::Bidirectional);
                        prop_assert_eq!(r.is_ok(), inside && free, "map {}+{}: {:?}", page, pages, r);
                        if r.is_ok() {
                            for p in page..page + pages {
                                model.insert(p, mem() + (p << 12));
                            }
                        }
                    }
                    Op::Unmap { page, pages } => {
                        let inside = page + pages <= PAGES;
                        let r = c.unmap(page << 12, pages << 12);
                        prop_assert_eq!(r.is_ok(), inside, "unmap {}+{}: {:?}", page, pages, r);
                        if r.is_ok() {
                            for p in page..page + pages {
                                model.remove(&p);
                            }
                        }
                    }
                }
                for p in 0..PAGES {
                    let seen = c.ops_mut().tce_at(p << 12).map(|(ua, _)| ua);
                    prop_assert_eq!(seen, model.get(&p).copied(), "page {}", p);
                }
                let tracked: u64 = c.mappings().map(|m| m.size >> 12).sum();
                prop_assert_eq!(tracked, model.len() as u64);
            }
            c.release().unwrap();
            prop_assert_eq!(c.ops_mut().leaked_registrations(), 0);
        }
    }
}
