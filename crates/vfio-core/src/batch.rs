//! Batched DMA map/unmap: many entries, few ioctls, all or nothing.
//!
//! Entries that are contiguous in IOVA *and* in host address, with the same
//! permissions, are coalesced into one `VFIO_IOMMU_MAP_DMA`: the kernel
//! accepts one mapping for the run, and each saved call is a lookup, a
//! pin and an IOMMU update saved (lab-facts: 15x on a real kernel).
//!
//! A map batch is all or nothing. If a coalesced call fails, its entries are
//! replayed one by one to name the exact entry that fails (so the error's
//! entry index and errno are those of a real entry), then everything this
//! batch mapped is unmapped again, each range with exactly the IOVA and size
//! it was mapped with: type1v2 refuses an unmap that splits a mapping
//! (vfio_dma_do_unmap), so the rollback never unmaps a sub-range.

use crate::backend::SysResult;
use crate::container::{dma_map, Container};
use crate::error::{Error, Result};
use crate::uapi::vfio_iommu_type1_dma_map;

/// An IO address space a batch maps into: a type1 container, or an
/// iommufd IOAS ([`crate::iommufd::Ioas`]). The batch logic (coalescing, the
/// replay that names the failing entry, the exact rollback) is written once
/// against this; each space says how one run becomes its ioctl. Runs are
/// carried as `vfio_iommu_type1_dma_map` (iova, vaddr, size and the
/// READ/WRITE flags of [`crate::dma_flags`]) whichever space takes them.
pub(crate) trait DmaSpace {
    /// The map and unmap ioctls, for errors.
    const MAP: &'static str;
    const UNMAP: &'static str;
    fn object(&self) -> String;
    /// Maps `runs` in order, stopping at the first failure: how many
    /// succeeded and the failure.
    fn map_runs(&self, runs: &mut [vfio_iommu_type1_dma_map]) -> (usize, SysResult<()>);
    /// Maps one entry, with the error naming it.
    fn map_one(&self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<()>;
    /// Unmaps exactly `[iova, iova + size)`; returns the bytes unmapped.
    fn unmap_range(&self, iova: u64, size: u64) -> Result<u64>;
}

impl DmaSpace for Container {
    const MAP: &'static str = "VFIO_IOMMU_MAP_DMA";
    const UNMAP: &'static str = "VFIO_IOMMU_UNMAP_DMA";
    fn object(&self) -> String {
        Container::object(self)
    }
    fn map_runs(&self, runs: &mut [vfio_iommu_type1_dma_map]) -> (usize, SysResult<()>) {
        self.backend().map_dma_many(self.raw_fd(), runs)
    }
    fn map_one(&self, iova: u64, vaddr: u64, size: u64, flags: u32) -> Result<()> {
        self.map_dma(iova, vaddr, size, flags)
    }
    fn unmap_range(&self, iova: u64, size: u64) -> Result<u64> {
        self.unmap_raw(iova, size, 0)
    }
}

/// What a successful batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchReport {
    /// Entries in the batch.
    pub entries: usize,
    /// `VFIO_IOMMU_MAP_DMA` / `UNMAP_DMA` calls issued.
    pub ioctls: usize,
    /// Bytes mapped or, for an unmap batch, bytes the kernel reported unmapped.
    pub bytes: u64,
}

/// Flags for a batch: one value for every entry, or one per entry.
#[derive(Debug, Clone, Copy)]
pub enum BatchFlags<'a> {
    All(u32),
    Each(&'a [u32]),
}

impl BatchFlags<'_> {
    #[inline]
    fn get(&self, i: usize) -> u32 {
        match self {
            BatchFlags::All(f) => *f,
            BatchFlags::Each(f) => f[i],
        }
    }
}

/// Coalesces `entries` ([iova, vaddr, size] each) into one map per run of
/// contiguous entries, appending to `out`. Never merges across a wrap of
/// the 64-bit space, and never merges zero-sized entries (the kernel must
/// see those to reject them).
fn coalesce(entries: &[[u64; 3]], flags: BatchFlags<'_>, out: &mut Vec<vfio_iommu_type1_dma_map>) {
    let mut i = 0;
    while i < entries.len() {
        let j = run_end(entries, flags, i);
        let [iova, vaddr, _] = entries[i];
        let size = entries[i..j].iter().map(|e| e[2]).sum();
        out.push(dma_map(iova, vaddr, size, flags.get(i)));
        i = j;
    }
}

/// Where each coalesced run starts: the index of its first entry, in order.
/// The one coalescing rule (`run_end`): everything above vfio-core that
/// needs to know which entries become one kernel mapping asks this (the
/// binding exposes it as `coalesceRuns`) instead of restating the rule.
pub fn run_starts(entries: &[[u64; 3]], flags: BatchFlags<'_>) -> Vec<u32> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        out.push(i as u32);
        i = run_end(entries, flags, i);
    }
    out
}

/// The end (exclusive) of the run that starts at entry `i`.
#[inline]
fn run_end(entries: &[[u64; 3]], flags: BatchFlags<'_>, i: usize) -> usize {
    let [iova, vaddr, mut size] = entries[i];
    let f = flags.get(i);
    let mut j = i + 1;
    if size == 0 {
        return j;
    }
    while j < entries.len() {
        let [ni, nv, ns] = entries[j];
        if ns == 0 || flags.get(j) != f {
            break;
        }
        let (Some(ie), Some(ve)) = (iova.checked_add(size), vaddr.checked_add(size)) else { break };
        if ni != ie || nv != ve {
            break;
        }
        let Some(total) = size.checked_add(ns) else { break };
        size = total;
        j += 1;
    }
    j
}

impl Container {
    /// Maps every entry (`[iova, vaddr, size]`) with its flags, coalescing
    /// contiguous entries. On failure nothing this call mapped remains, and
    /// the error names the failing entry, its errno and the ioctl.
    /// An entry that would end at 2^64 is refused before any ioctl, as by
    /// [`Container::map_dma`].
    pub fn map_batch(&self, entries: &[[u64; 3]], flags: BatchFlags<'_>) -> Result<BatchReport> {
        for (k, &[iova, _, size]) in entries.iter().enumerate() {
            self.refuse_end_at_top(iova, size).map_err(|e| e.with_entry(k))?;
        }
        map_batch(self, entries, flags)
    }

    /// Unmaps every entry (`[iova, size]`), coalescing contiguous entries
    /// (type1v2 accepts one unmap that covers several whole mappings).
    ///
    /// Input is checked first, so malformed input unmaps nothing. An unmap
    /// cannot be undone without the host addresses, so a kernel refusal at
    /// entry k leaves entries `0..k` unmapped and `k..` untouched; the error
    /// names k.
    pub fn unmap_batch(&self, entries: &[[u64; 2]]) -> Result<BatchReport> {
        unmap_batch(self, entries)
    }
}

/// [`Container::map_batch`] for any [`DmaSpace`].
pub(crate) fn map_batch<S: DmaSpace>(space: &S, entries: &[[u64; 3]], flags: BatchFlags<'_>) -> Result<BatchReport> {
    if let BatchFlags::Each(f) = flags {
        if f.len() != entries.len() {
            return Err(Error::new(libc::EINVAL, "map_batch", space.object()).with_detail(format!(
                "{} entries but {} flags: give one flag word per entry or one for all",
                entries.len(),
                f.len()
            )));
        }
    }
    // Coalesce and hand runs to the backend a chunk at a time: the
    // kernel backend issues one ioctl per run, the mock takes its lock
    // once per chunk, and the buffer stays small and cache-hot.
    const CHUNK: usize = 1024;
    let mut maps: Vec<vfio_iommu_type1_dma_map> = Vec::with_capacity(CHUNK.min(entries.len()));
    let mut starts: Vec<usize> = Vec::with_capacity(CHUNK.min(entries.len()));
    let mut report = BatchReport { entries: entries.len(), ioctls: 0, bytes: 0 };
    let mut i = 0;
    let (first, end, run_errno) = loop {
        if i == entries.len() {
            return Ok(report);
        }
        maps.clear();
        starts.clear();
        while i < entries.len() && maps.len() < CHUNK {
            let j = run_end(entries, flags, i);
            let [iova, vaddr, _] = entries[i];
            let size = entries[i..j].iter().map(|e| e[2]).sum();
            starts.push(i);
            maps.push(dma_map(iova, vaddr, size, flags.get(i)));
            i = j;
        }
        let (done, result) = space.map_runs(&mut maps);
        report.ioctls += done;
        report.bytes += maps[..done].iter().map(|m| m.size).sum::<u64>();
        if let Err(e) = result {
            let end = starts.get(done + 1).copied().unwrap_or(i);
            break (starts[done], end, e);
        }
    };

    // The run at entries first..end failed as a whole. Replay its
    // entries one by one to find the one the kernel refuses.
    let mut replayed: Vec<vfio_iommu_type1_dma_map> = Vec::new();
    let mut culprit: Option<(usize, Error)> = None;
    for (k, &[iova, vaddr, size]) in entries.iter().enumerate().take(end).skip(first) {
        match space.map_one(iova, vaddr, size, flags.get(k)) {
            Ok(()) => replayed.push(dma_map(iova, vaddr, size, flags.get(k))),
            Err(e) => {
                culprit = Some((k, e));
                break;
            }
        }
    }
    let (k, err) = match culprit {
        Some(c) => c,
        None => {
            // Every entry maps alone but not together: report the run's
            // first entry with the coalesced call's errno.
            let size: u64 = entries[first..end].iter().map(|e| e[2]).sum();
            (
                first,
                Error::new(run_errno.0, S::MAP, space.object()).with_detail(format!(
                    "coalesced run of {} entries iova {:#x} size {:#x}",
                    end - first,
                    entries[first][0],
                    size
                )),
            )
        }
    };
    // Roll back: exactly the ranges mapped, newest first. The runs
    // before `first` are recomputed: coalescing is deterministic.
    let mut earlier = Vec::new();
    coalesce(&entries[..first], flags, &mut earlier);
    let mut rollback_failures = Vec::new();
    for m in replayed.iter().rev().chain(earlier.iter().rev()) {
        if let Err(e) = space.unmap_range(m.iova, m.size) {
            rollback_failures.push(format!("{:#x}+{:#x}: {}", m.iova, m.size, e.code()));
        }
    }
    let mut err = err.with_entry(k);
    if !rollback_failures.is_empty() {
        let d = err.detail.take().unwrap_or_default();
        err = err.with_detail(format!("{d}; rollback could not unmap {}", rollback_failures.join(", ")));
    }
    Err(err)
}

/// [`Container::unmap_batch`] for any [`DmaSpace`].
pub(crate) fn unmap_batch<S: DmaSpace>(space: &S, entries: &[[u64; 2]]) -> Result<BatchReport> {
    for (k, [iova, size]) in entries.iter().enumerate() {
        if *size == 0 || iova.checked_add(*size - 1).is_none() {
            return Err(Error::new(libc::EINVAL, S::UNMAP, space.object())
                .with_entry(k)
                .with_detail(format!("iova {iova:#x} size {size:#x}: zero size or wraps")));
        }
    }
    let mut report = BatchReport { entries: entries.len(), ..Default::default() };
    let mut i = 0;
    while i < entries.len() {
        let [iova, mut size] = entries[i];
        let mut j = i + 1;
        while j < entries.len() && iova.checked_add(size) == Some(entries[j][0]) {
            match size.checked_add(entries[j][1]) {
                Some(s) => size = s,
                None => break,
            }
            j += 1;
        }
        report.ioctls += 1;
        match space.unmap_range(iova, size) {
            Ok(n) => report.bytes += n,
            Err(e) if j - i == 1 => return Err(e.with_entry(i)),
            Err(_) => {
                // Find the entry the kernel refuses; the ones before it
                // in this run are unmapped, as the contract says.
                for (k, &[ki, ks]) in entries.iter().enumerate().take(j).skip(i) {
                    report.ioctls += 1;
                    match space.unmap_range(ki, ks) {
                        Ok(n) => report.bytes += n,
                        Err(e) => return Err(e.with_entry(k)),
                    }
                }
            }
        }
        i = j;
    }
    Ok(report)
}

/// Splits a flat `[iova, vaddr, size, iova, vaddr, size, ...]` slice (as a
/// `BigUint64Array` arrives from JavaScript) into triples without copying.
pub fn as_triples(flat: &[u64]) -> Option<&[[u64; 3]]> {
    let (chunks, rest) = flat.as_chunks::<3>();
    rest.is_empty().then_some(chunks)
}

/// Splits a flat `[iova, size, ...]` slice into pairs without copying.
pub fn as_pairs(flat: &[u64]) -> Option<&[[u64; 2]]> {
    let (chunks, rest) = flat.as_chunks::<2>();
    rest.is_empty().then_some(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_start_where_iova_host_address_or_flags_break_contiguity() {
        let e = [[0x1000, 0xa000, 0x1000], [0x2000, 0xb000, 0x1000], [0x3000, 0xd000, 0x1000], [0x4000, 0xe000, 0x1000], [0x5000, 0xf000, 0]];
        assert_eq!(run_starts(&e, BatchFlags::Each(&[3, 3, 3, 1, 1])), vec![0, 2, 3, 4]);
        assert_eq!(run_starts(&e[..2], BatchFlags::All(3)), vec![0]);
        assert_eq!(run_starts(&[], BatchFlags::All(3)), Vec::<u32>::new());
    }

    /// The entry range of run number `run`.
    fn run_bounds(entries: &[[u64; 3]], flags: BatchFlags<'_>, run: usize) -> (usize, usize) {
        let mut i = 0;
        for _ in 0..run {
            i = run_end(entries, flags, i);
        }
        (i, run_end(entries, flags, i))
    }

    fn runs(entries: &[[u64; 3]], flags: BatchFlags<'_>) -> Vec<(usize, usize, u64, u64, u64)> {
        let mut out = Vec::new();
        coalesce(entries, flags, &mut out);
        (0..out.len())
            .map(|r| {
                let (a, b) = run_bounds(entries, flags, r);
                (a, b - a, out[r].iova, out[r].vaddr, out[r].size)
            })
            .collect()
    }

    #[test]
    fn contiguous_entries_with_equal_flags_become_one_run() {
        let e = [[0x1000, 0x10000, 0x1000], [0x2000, 0x11000, 0x1000], [0x3000, 0x12000, 0x2000]];
        assert_eq!(runs(&e, BatchFlags::All(3)), vec![(0, 3, 0x1000, 0x10000, 0x4000)]);
    }

    #[test]
    fn a_gap_in_host_address_splits_a_run() {
        let e = [[0x1000, 0x10000, 0x1000], [0x2000, 0x20000, 0x1000]];
        assert_eq!(runs(&e, BatchFlags::All(3)).len(), 2);
    }

    #[test]
    fn different_flags_split_a_run() {
        let e = [[0x1000, 0x10000, 0x1000], [0x2000, 0x11000, 0x1000]];
        assert_eq!(runs(&e, BatchFlags::Each(&[3, 1])).len(), 2);
    }

    #[test]
    fn zero_sized_entries_are_never_merged() {
        let e = [[0x1000, 0x10000, 0x1000], [0x2000, 0x11000, 0], [0x2000, 0x11000, 0x1000]];
        assert_eq!(runs(&e, BatchFlags::All(3)).len(), 3);
    }

    #[test]
    fn runs_never_wrap_the_address_space() {
        let e = [[u64::MAX - 0xfff, 0x10000, 0x1000], [0, 0x11000, 0x1000]];
        assert_eq!(runs(&e, BatchFlags::All(3)).len(), 2);
    }
}
