//! Info capability chains as the kernel builds them (vfio_info_cap_add,
//! vfio_info_cap_shift in drivers/vfio/vfio_main.c).

use super::super::{read_pod, write_pod};
use crate::uapi::vfio_info_cap_header;

/// A capability chain under construction (vfio_info_cap_add / vfio_info_cap_shift).
#[derive(Default)]
pub(super) struct CapChain {
    pub(super) bytes: Vec<u8>,
    last: Option<usize>,
    /// 6.1's vfio_info_cap_add packs entries back to back (the lab's 6.1
    /// kernel reports a type1 info argsz of 116 = 24 + 32 + 12 + 48); later
    /// kernels align each entry to 8 bytes.
    pub(super) packed: bool,
}

impl CapChain {
    /// An empty chain; `packed` lays entries back to back as 6.1 does.
    pub(super) fn new(packed: bool) -> Self {
        Self { packed, ..Default::default() }
    }
    pub(super) fn add<T: Copy>(&mut self, id: u16, version: u16, head: &T, tail: &[u8]) {
        let off = self.bytes.len();
        let raw = std::mem::size_of::<T>() + tail.len();
        let size = if self.packed { raw } else { raw.div_ceil(8) * 8 };
        self.bytes.resize(off + size, 0);
        write_pod(&mut self.bytes, off, head, std::mem::size_of::<T>());
        self.bytes[off + std::mem::size_of::<T>()..off + std::mem::size_of::<T>() + tail.len()].copy_from_slice(tail);
        let h = vfio_info_cap_header { id, version, next: 0 };
        write_pod(&mut self.bytes, off, &h, 8);
        if let Some(prev) = self.last {
            let mut ph: vfio_info_cap_header = read_pod(&self.bytes, prev).unwrap_or_default();
            ph.next = off as u32;
            write_pod(&mut self.bytes, prev, &ph, 8);
        }
        self.last = Some(off);
    }

    /// Copies the chain to `dst` at `at`, with every `next` moved by `at`.
    /// False when `dst` is shorter than its argsz said: the kernel's
    /// copy_to_user would run past the caller's buffer (EFAULT at best).
    #[must_use]
    pub(super) fn shift_into(&self, dst: &mut [u8], at: usize) -> bool {
        let Some(room) = dst.get_mut(at..at + self.bytes.len()) else { return false };
        room.copy_from_slice(&self.bytes);
        let mut off = 0usize;
        loop {
            let mut h: vfio_info_cap_header = read_pod(dst, at + off).unwrap_or_default();
            if h.next == 0 {
                break;
            }
            let next = h.next as usize;
            h.next += at as u32;
            write_pod(dst, at + off, &h, 8);
            off = next;
        }
        true
    }
}
