//! The mock's index of DMA mappings (the kernel's `iommu->dma_list`
//! rb-tree): non-overlapping `[iova, iova + size)` intervals keyed by IOVA.
//!
//! Mappings usually arrive in ascending IOVA order (a guest's RAM, a batch),
//! so the index keeps a sorted `tail` of mappings above everything in the
//! B-tree: an ascending map is a bounds check and a push, and lookups stay
//! O(log n) in both parts. An insert inside the tail's span moves the tail
//! into the tree first (bulk-appended when it is large, so the cost stays
//! amortised O(1) per mapping).
//!
//! The tail is the index's bulk (a batch of a million scattered pages
//! lands there), and filling it is bound by first-touch page faults of its
//! storage, so it is kept compact: the three 64-bit words of a mapping in
//! one vector and its permission bits in a parallel byte vector, 25 bytes
//! a mapping instead of the 32 of a padded `(u64, Dma)`.

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

/// `Dma::prot` bits and `Dma::vaddr_invalid`, packed into one tail byte.
const READ: u8 = 1 << 0;
const WRITE: u8 = 1 << 1;
const VADDR_INVALID: u8 = 1 << 2;

/// `[iova, size, vaddr]` of one tail mapping.
type Slot = [u64; 3];

fn pack(dma: &Dma) -> u8 {
    debug_assert_eq!(dma.prot & !3, 0, "prot holds only VFIO_DMA_MAP_FLAG_READ | WRITE");
    (dma.prot & 3) as u8 | if dma.vaddr_invalid { VADDR_INVALID } else { 0 }
}

fn unpack(slot: &Slot, bits: u8) -> (u64, Dma) {
    let prot = (bits & (READ | WRITE)) as u32;
    (slot[0], Dma { size: slot[1], vaddr: slot[2], prot, vaddr_invalid: bits & VADDR_INVALID != 0 })
}

#[derive(Debug, Default)]
pub struct DmaIndex {
    tree: BTreeMap<u64, Dma>,
    /// Sorted by IOVA; every key is above every key of `tree`.
    tail: Vec<Slot>,
    /// `tail[i]`'s permission bits (see `pack`).
    tail_bits: Vec<u8>,
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
        self.tail_bits.clear();
    }

    fn tail_at(&self, i: usize) -> (u64, Dma) {
        unpack(&self.tail[i], self.tail_bits[i])
    }

    fn push_tail(&mut self, iova: u64, dma: &Dma) {
        self.tail.push([iova, dma.size, dma.vaddr]);
        self.tail_bits.push(pack(dma));
    }

    /// Empties the tail, in ascending order.
    fn drain_tail(&mut self) -> impl Iterator<Item = (u64, Dma)> + '_ {
        self.tail.drain(..).zip(self.tail_bits.drain(..)).map(|(s, b)| unpack(&s, b))
    }

    /// The mapping with the greatest IOVA below `end` (exclusive), if any.
    fn last_below(&self, end: u64) -> Option<(u64, Dma)> {
        // The common case, an ascending map: the greatest key of all is below `end`.
        if let Some(last) = self.tail.last() {
            if last[0] < end {
                return Some(self.tail_at(self.tail.len() - 1));
            }
        }
        let i = self.tail.partition_point(|s| s[0] < end);
        if i > 0 {
            return Some(self.tail_at(i - 1));
        }
        self.tree.range(..end).next_back().map(|(k, d)| (*k, *d))
    }

    /// A mapping intersecting `[start, end)` (`end` exclusive, `end > start`).
    pub fn intersecting(&self, start: u64, end: u64) -> Option<(u64, Dma)> {
        // The last byte, not the end: a mapping may end at 2^64 (AMD-Vi's aperture does).
        self.last_below(end).filter(|(k, d)| k + (d.size - 1) >= start)
    }

    /// The mapping containing `addr`.
    pub fn containing(&self, addr: u64) -> Option<(u64, Dma)> {
        self.last_below(addr.checked_add(1)?).filter(|(k, d)| addr <= k + (d.size - 1))
    }

    /// Inserts a mapping the caller has checked overlaps nothing.
    pub fn insert(&mut self, iova: u64, dma: Dma) {
        match self.tail.last() {
            Some(last) if iova > last[0] => self.push_tail(iova, &dma),
            None if self.tree.last_key_value().is_none_or(|(k, _)| iova > *k) => self.push_tail(iova, &dma),
            _ => {
                if self.tail.first().is_some_and(|first| iova > first[0]) {
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
            let mut t: BTreeMap<u64, Dma> = self.drain_tail().collect();
            self.tree.append(&mut t);
        } else {
            for (s, b) in self.tail.drain(..).zip(self.tail_bits.drain(..)) {
                let (k, d) = unpack(&s, b);
                self.tree.insert(k, d);
            }
        }
    }

    /// IOVAs of the mappings that start in `[first, last]`, ascending.
    pub fn keys_starting_in(&self, first: u64, last: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self.tree.range(first..=last).map(|(k, _)| *k).collect();
        let lo = self.tail.partition_point(|s| s[0] < first);
        let hi = self.tail.partition_point(|s| s[0] <= last);
        out.extend(self.tail[lo..hi].iter().map(|s| s[0]));
        out
    }

    /// The mapping at exactly `iova`.
    pub fn get(&self, iova: u64) -> Option<Dma> {
        if let Some(d) = self.tree.get(&iova) {
            return Some(*d);
        }
        let i = self.tail.binary_search_by_key(&iova, |s| s[0]).ok()?;
        Some(self.tail_at(i).1)
    }

    /// Changes the mapping at exactly `iova` in place; false if there is none.
    pub fn update(&mut self, iova: u64, f: impl FnOnce(&mut Dma)) -> bool {
        if let Some(d) = self.tree.get_mut(&iova) {
            f(d);
            return true;
        }
        let Ok(i) = self.tail.binary_search_by_key(&iova, |s| s[0]) else { return false };
        let (_, mut d) = self.tail_at(i);
        f(&mut d);
        debug_assert_eq!(d.size, self.tail[i][1], "an update keeps the mapping's size");
        self.tail[i][2] = d.vaddr;
        self.tail_bits[i] = pack(&d);
        true
    }

    /// Removes the mapping at exactly `iova`.
    pub fn remove(&mut self, iova: u64) -> Option<Dma> {
        if let Some(d) = self.tree.remove(&iova) {
            return Some(d);
        }
        let i = self.tail.binary_search_by_key(&iova, |s| s[0]).ok()?;
        if i + 1 == self.tail.len() {
            let bits = self.tail_bits.pop()?;
            return self.tail.pop().map(|s| unpack(&s, bits).1);
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
    fn a_tail_mapping_keeps_its_permissions_and_vaddr_state_through_an_update() {
        let mut x = DmaIndex::default();
        x.insert(0x1000, Dma { size: 0x2000, vaddr: 0x9000, prot: 1, vaddr_invalid: false });
        assert!(x.update(0x1000, |d| d.vaddr_invalid = true));
        assert_eq!(x.get(0x1000), Some(Dma { size: 0x2000, vaddr: 0x9000, prot: 1, vaddr_invalid: true }));
        assert!(x.update(0x1000, |d| (d.vaddr, d.vaddr_invalid) = (0xa000, false)));
        assert_eq!(x.get(0x1000), Some(Dma { size: 0x2000, vaddr: 0xa000, prot: 1, vaddr_invalid: false }));
        assert_eq!((x.tree.len(), x.tail.len()), (0, 1));
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
