//! Random map/unmap sequences on the mock against a plain reference model of
//! type1v2 (a list of intervals and the rules of vfio_dma_do_map /
//! vfio_dma_do_unmap written out naively): every result and errno must agree.

mod common;

use common::*;
use proptest::prelude::*;
use vfio_core::backend::IovaSpan;
use vfio_core::{BatchFlags, MockConfig};

const PG: u64 = 0x1000;
const LIMIT: u32 = 6;
/// Two usable ranges with a hole, like VT-d's MSI window.
const RANGES: [(u64, u64); 2] = [(0, 40 * PG - 1), (48 * PG, 64 * PG - 1)];

#[derive(Debug, Clone)]
enum Op {
    Map { iova: u64, size: u64, flags: u32 },
    Unmap { iova: u64, size: u64 },
    UnmapAll,
    Batch { entries: Vec<[u64; 3]> },
}

/// Addresses are mostly page-aligned, sometimes not.
fn addr() -> impl Strategy<Value = u64> {
    prop_oneof![9 => (0u64..70).prop_map(|p| p * PG), 1 => 0u64..70 * PG]
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![9 => (0u64..8).prop_map(|p| p * PG), 1 => 0u64..8 * PG]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (addr(), size(), prop_oneof![8 => Just(3u32), 1 => Just(1u32), 1 => Just(0u32)])
            .prop_map(|(iova, size, flags)| Op::Map { iova, size, flags }),
        4 => (addr(), size()).prop_map(|(iova, size)| Op::Unmap { iova, size }),
        1 => Just(Op::UnmapAll),
        2 => prop::collection::vec((0u64..64, 1u64..4), 1..6).prop_map(|v| Op::Batch {
            // Runs of pages, often contiguous, so coalescing matters.
            entries: v
                .into_iter()
                .scan(0u64, |next, (gap, n)| {
                    let start = if gap % 3 == 0 { *next } else { gap * PG };
                    *next = start + n * PG;
                    Some([start, va() + start, n * PG])
                })
                .collect(),
        }),
    ]
}

/// The reference: what the kernel's rules say, with no cleverness.
#[derive(Default, Clone)]
struct Model {
    maps: Vec<(u64, u64)>,
}

impl Model {
    fn overlaps(&self, iova: u64, size: u64) -> bool {
        self.maps.iter().any(|&(a, s)| a < iova + size && iova < a + s)
    }

    fn map(&mut self, iova: u64, size: u64, flags: u32) -> Result<u64, &'static str> {
        if flags & 3 == 0 || size == 0 || !(iova | size).is_multiple_of(PG) {
            return Err("EINVAL");
        }
        if iova.checked_add(size - 1).is_none() {
            return Err("EINVAL");
        }
        if self.overlaps(iova, size) {
            return Err("EEXIST");
        }
        if self.maps.len() >= LIMIT as usize {
            return Err("ENOSPC");
        }
        if !RANGES.iter().any(|&(s, e)| iova >= s && iova + size - 1 <= e) {
            return Err("EINVAL");
        }
        self.maps.push((iova, size));
        Ok(0)
    }

    fn unmap(&mut self, iova: u64, size: u64) -> Result<u64, &'static str> {
        if !iova.is_multiple_of(PG) || size == 0 || !size.is_multiple_of(PG) {
            return Err("EINVAL");
        }
        let end = iova + size;
        // type1v2: no mapping may be cut at either end.
        if self.maps.iter().any(|&(a, s)| (a < iova && iova < a + s) || (a < end && end < a + s)) {
            return Err("EINVAL");
        }
        let removed: u64 = self.maps.iter().filter(|&&(a, _)| a >= iova && a < end).map(|&(_, s)| s).sum();
        self.maps.retain(|&(a, _)| !(a >= iova && a < end));
        Ok(removed)
    }

    fn unmap_all(&mut self) -> Result<u64, &'static str> {
        let total = self.maps.iter().map(|&(_, s)| s).sum();
        self.maps.clear();
        Ok(total)
    }

    /// All or nothing: the batch maps iff every entry maps on top of the
    /// previous ones when contiguous entries are merged; otherwise nothing changes.
    fn batch(&mut self, entries: &[[u64; 3]]) -> Result<u64, &'static str> {
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for e in entries {
            match merged.last_mut() {
                Some(last) if last.0 + last.1 == e[0] => last.1 += e[2],
                _ => merged.push((e[0], e[2])),
            }
        }
        let mut trial = self.clone();
        for &(iova, size) in &merged {
            trial.map(iova, size, 3)?;
        }
        *self = trial;
        Ok(entries.iter().map(|e| e[2]).sum())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_agree_with_the_reference_model(ops in prop::collection::vec(op(), 1..40)) {
        let cfg = MockConfig {
            dma_entry_limit: LIMIT,
            iova_ranges: RANGES.iter().map(|&(s, e)| IovaSpan::new(s, e)).collect(),
            ..MockConfig::default()
        };
        let f = Fixture::new(cfg);
        let mut model = Model::default();
        for (i, op) in ops.iter().enumerate() {
            let (got, want) = match op {
                Op::Map { iova, size, flags } => (
                    f.container.map_dma(*iova, va() + *iova, *size, *flags).map(|_| 0).map_err(|e| e.code()),
                    model.map(*iova, *size, *flags),
                ),
                Op::Unmap { iova, size } => (f.container.unmap_dma(*iova, *size).map_err(|e| e.code()), model.unmap(*iova, *size)),
                Op::UnmapAll => (f.container.unmap_all().map_err(|e| e.code()), model.unmap_all()),
                Op::Batch { entries } => (
                    f.container.map_batch(entries, BatchFlags::All(RW)).map(|r| r.bytes).map_err(|e| e.code()),
                    model.batch(entries),
                ),
            };
            // A batch's errno may name the entry that failed alone where the
            // model merged, so batches compare success and state only.
            if matches!(op, Op::Batch { .. }) {
                prop_assert_eq!(got.is_ok(), want.is_ok(), "op {} {:?}: mock {:?}, model {:?}", i, op, got, want);
                if got.is_ok() { prop_assert_eq!(got, want); }
            } else {
                prop_assert_eq!(got, want, "op {} {:?}", i, op);
            }
            let avail = f.container.iommu_info().unwrap().dma_avail.unwrap();
            prop_assert_eq!(avail as usize, LIMIT as usize - model.maps.len(), "dma_avail after op {} {:?}", i, op);
        }
    }
}
