//! The mock's index of DMA mappings (the kernel's `iommu->dma_list`
//! rb-tree): non-overlapping `[iova, iova + size)` intervals keyed by IOVA.
//!
//! Mappings usually arrive in ascending IOVA order (a guest's RAM, a batch),
//! so the index keeps a sorted `tail` of mappings above everything in the
//! B-tree: an ascending map is a bounds check and a push, and lookups stay
//! O(log n) in both parts. An insert inside the tail's span moves the tail
//! into the tree first (bulk-appended when it is large, so the cost stays
//! amortised O(1) per mapping).

use std::collections::BTreeMap;

/// One mapping's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dma {
    pub size: u64,
    pub vaddr: u64,
    pub prot: u32,
    /// Set by an unmap with VFIO_DMA_UNMAP_FLAG_VADDR until a map with
    /// VFIO_DMA_MAP_FLAG_VADDR supplies a new one.
    pub vaddr_invalid: bool,
}

#[derive(Debug, Default)]
pub struct DmaIndex {
    tree: BTreeMap<u64, Dma>,
    /// Sorted by IOVA; every key is above every key of `tree`.
    tail: Vec<(u64, Dma)>,
}

impl DmaIndex {
    pub fn len(&self) -> usize {
        self.tree.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        self.tree.clear();
        self.tail.clear();
    }

    /// The mapping with the greatest IOVA below `end` (exclusive), if any.
    fn last_below(&self, end: u64) -> Option<(u64, Dma)> {
        // The common case, an ascending map: the greatest key of all is below `end`.
        if let Some(&last) = self.tail.last() {
            if last.0 < end {
                return Some(last);
            }
        }
        let i = self.tail.partition_point(|(k, _)| *k < end);
        if i > 0 {
            return Some(self.tail[i - 1]);
        }
        self.tree.range(..end).next_back().map(|(k, d)| (*k, *d))
    }

    /// A mapping intersecting `[start, end)` (`end` exclusive, `end > start`).
    pub fn intersecting(&self, start: u64, end: u64) -> Option<(u64, Dma)> {
        self.last_below(end).filter(|(k, d)| k + d.size > start)
    }

    /// The mapping containing `addr`.
    pub fn containing(&self, addr: u64) -> Option<(u64, Dma)> {
        self.last_below(addr.checked_add(1)?).filter(|(k, d)| addr < k + d.size)
    }

    /// Inserts a mapping the caller has checked overlaps nothing.
    pub fn insert(&mut self, iova: u64, dma: Dma) {
        match self.tail.last() {
            Some((last, _)) if iova > *last => self.tail.push((iova, dma)),
            None if self.tree.last_key_value().is_none_or(|(k, _)| iova > *k) => self.tail.push((iova, dma)),
            _ => {
                if self.tail.first().is_some_and(|(first, _)| iova > *first) {
                    self.flush_tail();
                }
                self.tree.insert(iova, dma);
            }
        }
    }

    /// Moves the tail into the tree: one by one when it is small next to
    /// the tree, by a linear bulk append when it is not.
    fn flush_tail(&mut self) {
        if self.tail.len() * 8 >= self.tree.len() {
            let mut t: BTreeMap<u64, Dma> = self.tail.drain(..).collect();
            self.tree.append(&mut t);
        } else {
            for (k, d) in self.tail.drain(..) {
                self.tree.insert(k, d);
            }
        }
    }

    /// IOVAs of the mappings that start in `[first, last]`, ascending.
    pub fn keys_starting_in(&self, first: u64, last: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self.tree.range(first..=last).map(|(k, _)| *k).collect();
        let lo = self.tail.partition_point(|(k, _)| *k < first);
        let hi = self.tail.partition_point(|(k, _)| *k <= last);
        out.extend(self.tail[lo..hi].iter().map(|(k, _)| *k));
        out
    }

    /// The mapping at exactly `iova`, to change it in place.
    pub fn get_mut(&mut self, iova: u64) -> Option<&mut Dma> {
        if let Some(d) = self.tree.get_mut(&iova) {
            return Some(d);
        }
        let i = self.tail.binary_search_by_key(&iova, |(k, _)| *k).ok()?;
        Some(&mut self.tail[i].1)
    }

    /// Removes the mapping at exactly `iova`.
    pub fn remove(&mut self, iova: u64) -> Option<Dma> {
        if let Some(d) = self.tree.remove(&iova) {
            return Some(d);
        }
        let i = self.tail.binary_search_by_key(&iova, |(k, _)| *k).ok()?;
        if i + 1 == self.tail.len() {
            return self.tail.pop().map(|(_, d)| d);
        }
        // Removing from inside the tail: move it into the tree, where
        // removal is O(log n), rather than shifting the vector each time.
        self.flush_tail();
        self.tree.remove(&iova)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Dma = Dma { size: 0x1000, vaddr: 0, prot: 3, vaddr_invalid: false };

    #[test]
    fn ascending_inserts_stay_in_the_tail() {
        let mut x = DmaIndex::default();
        for i in 0..10 {
            x.insert(i * 0x2000, D);
        }
        assert_eq!((x.tree.len(), x.tail.len()), (0, 10));
    }

    #[test]
    fn an_insert_inside_the_tail_keeps_every_mapping_findable() {
        let mut x = DmaIndex::default();
        x.insert(0x0, D);
        x.insert(0x4000, D);
        x.insert(0x2000, D);
        assert_eq!(x.keys_starting_in(0, u64::MAX), vec![0, 0x2000, 0x4000]);
        assert_eq!(x.containing(0x2fff).map(|m| m.0), Some(0x2000));
        assert_eq!(x.containing(0x3000), None);
    }

    #[test]
    fn a_descending_insert_goes_to_the_tree_and_the_order_holds() {
        let mut x = DmaIndex::default();
        x.insert(0x8000, D);
        x.insert(0x2000, D);
        x.insert(0xa000, D);
        assert_eq!(x.keys_starting_in(0, u64::MAX), vec![0x2000, 0x8000, 0xa000]);
    }

    #[test]
    fn intersecting_finds_a_mapping_that_starts_before_the_range() {
        let mut x = DmaIndex::default();
        x.insert(0x1000, Dma { size: 0x4000, ..D });
        assert_eq!(x.intersecting(0x3000, 0x4000).map(|m| m.0), Some(0x1000));
        assert_eq!(x.intersecting(0x5000, 0x6000), None);
    }

    #[test]
    fn removing_from_the_middle_of_the_tail_keeps_the_rest() {
        let mut x = DmaIndex::default();
        for i in 0..5 {
            x.insert(i * 0x1000, D);
        }
        assert_eq!(x.remove(0x2000), Some(D));
        assert_eq!(x.keys_starting_in(0, u64::MAX), vec![0, 0x1000, 0x3000, 0x4000]);
        assert_eq!(x.len(), 4);
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Insert(u64, u64),
            Remove(u64),
            Query(u64, u64),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                4 => (0u64..256, 1u64..4).prop_map(|(a, n)| Op::Insert(a, n)),
                2 => (0u64..256).prop_map(Op::Remove),
                3 => (0u64..260, 1u64..8).prop_map(|(a, n)| Op::Query(a, n)),
            ]
        }

        proptest! {
            /// Whatever the order of inserts and removals, the index answers
            /// like a plain BTreeMap of intervals.
            #[test]
            fn the_index_answers_like_a_plain_btreemap(ops in prop::collection::vec(op(), 1..200)) {
                let mut x = DmaIndex::default();
                let mut r: BTreeMap<u64, u64> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Insert(a, n) => {
                            let (start, end) = (a * 0x1000, (a + n) * 0x1000);
                            if r.iter().any(|(&k, &s)| k < end && start < k + s) {
                                continue; // the caller only inserts what overlaps nothing
                            }
                            r.insert(start, n * 0x1000);
                            x.insert(start, Dma { size: n * 0x1000, vaddr: start, prot: 3, vaddr_invalid: false });
                        }
                        Op::Remove(a) => {
                            let k = a * 0x1000;
                            prop_assert_eq!(x.remove(k).map(|d| d.size), r.remove(&k));
                        }
                        Op::Query(a, n) => {
                            let (start, end) = (a * 0x1000, (a + n) * 0x1000);
                            let want = r.range(..end).next_back().filter(|(&k, &s)| k + s > start).map(|(&k, _)| k);
                            prop_assert_eq!(x.intersecting(start, end).map(|m| m.0), want);
                            let want_c = r.range(..=start).next_back().filter(|(&k, &s)| start < k + s).map(|(&k, _)| k);
                            prop_assert_eq!(x.containing(start).map(|m| m.0), want_c);
                        }
                    }
                    prop_assert_eq!(x.len(), r.len());
                    prop_assert_eq!(x.keys_starting_in(0, u64::MAX), r.keys().copied().collect::<Vec<_>>());
                }
            }
        }
    }
}
