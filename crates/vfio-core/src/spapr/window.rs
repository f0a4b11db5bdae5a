//! DMA windows and the arithmetic every sPAPR rule needs, free of any backend.

/// One DMA window of a PE: a TCE table covering `[start, start + size)` of the
/// bus address space, in TCEs of `1 << page_shift` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: u64,
    pub size: u64,
    pub page_shift: u32,
}

impl Window {
    pub fn page_size(&self) -> u64 {
        1u64 << self.page_shift
    }

    /// One past the last bus address; `None` when the window reaches 2^64.
    pub fn end(&self) -> Option<u64> {
        self.start.checked_add(self.size)
    }

    /// Whether `iova` lies in the window. This is the test
    /// `tce_iommu_find_table` applies to pick a window for a call.
    pub fn holds(&self, iova: u64) -> bool {
        iova >= self.start && self.end().is_none_or(|end| iova < end)
    }

    /// Whether all of `[iova, iova + size)` lies in the window: the check
    /// `iommu_tce_put_param_check` does not make for maps (it passes npages = 1),
    /// which lets a map run past the table's end and oops 6.12.
    pub fn contains_range(&self, iova: u64, size: u64) -> bool {
        let Some(last) = size.checked_sub(1).and_then(|s| iova.checked_add(s)) else {
            return false;
        };
        self.holds(iova) && self.holds(last)
    }
}

/// `VFIO_IOMMU_SPAPR_TCE_GET_INFO` in plain terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TceInfo {
    /// The default 32-bit window (`tce32_start`, `tce32_size` of the PE).
    pub dma32_start: u64,
    pub dma32_size: u64,
    /// Dynamic DMA windows, reported only to a v2 container of a PE that has them.
    pub ddw: Option<DdwInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DdwInfo {
    /// Bit n set: TCEs of 2^n bytes can back a window.
    pub page_sizes: u64,
    pub max_windows: u32,
    pub levels: u32,
}

/// The TCE table levels QEMU asks for first (`vfio_spapr_create_window` in
/// hw/vfio/spapr.c): the index bits of the window split into chunks one host
/// page plus 8 bits of order wide, rounded up. At least 1.
pub fn initial_levels(page_shift: u32, window_size: u64, host_page_shift: u32) -> u32 {
    let entries = window_size >> page_shift;
    let table_bytes = entries.saturating_mul(8);
    let bits_total = if table_bytes == 0 { 0 } else { table_bytes.trailing_zeros() };
    let bits_per_level = host_page_shift + 8;
    bits_total.div_ceil(bits_per_level).max(1)
}

/// The most levels QEMU tries before giving up: `(64 - page_shift) / host_page_shift`.
pub fn max_levels(page_shift: u32, host_page_shift: u32) -> u32 {
    (64 - page_shift) / host_page_shift
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Window = Window { start: 0, size: 1 << 30, page_shift: 12 };

    #[test]
    fn a_range_ending_exactly_at_the_window_end_is_inside() {
        assert!(DEFAULT.contains_range((1 << 30) - 0x1000, 0x1000));
    }

    #[test]
    fn a_range_running_one_page_past_the_window_end_is_outside() {
        assert!(!DEFAULT.contains_range((1 << 30) - 0x1000, 0x2000));
    }

    #[test]
    fn an_empty_range_is_never_inside() {
        assert!(!DEFAULT.contains_range(0, 0));
    }

    #[test]
    fn a_range_that_wraps_the_address_space_is_outside() {
        let top = Window { start: 1 << 63, size: 1 << 63, page_shift: 12 };
        assert!(!top.contains_range(u64::MAX - 0xfff, 0x2000));
    }

    #[test]
    fn a_window_reaching_two_to_the_64_holds_its_last_page() {
        let top = Window { start: 1 << 63, size: 1 << 63, page_shift: 12 };
        assert!(top.contains_range(u64::MAX - 0xfff, 0x1000));
    }

    #[test]
    fn qemu_asks_one_level_for_a_one_gib_window_of_4k_tces_on_64k_pages() {
        // 2^18 TCEs * 8 bytes = 2^21 bytes of table; 16+8 = 24 bits fit in one level.
        assert_eq!(initial_levels(12, 1 << 30, 16), 1);
    }

    #[test]
    fn qemu_asks_two_levels_for_a_64_gib_window_of_4k_tces_on_4k_pages() {
        // 2^24 TCEs * 8 = 2^27 bytes; 12+8 = 20 bits per level: 2 levels.
        assert_eq!(initial_levels(12, 1 << 36, 12), 2);
    }

    #[test]
    fn qemu_tries_up_to_four_levels_for_64k_tces_on_12_bit_pages() {
        assert_eq!(max_levels(16, 12), 4);
    }
}
