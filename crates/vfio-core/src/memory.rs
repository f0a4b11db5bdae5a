//! `HostMemory`: page-aligned anonymous memory of this process, for DMA.
//!
//! `VFIO_IOMMU_MAP_DMA` takes a host virtual address; the kernel pins the
//! pages behind it. This gives callers (tests, the lab, TypeScript through
//! the binding) memory with a stable address, page alignment and a known
//! size, released with `munmap` when dropped.

use std::ptr::NonNull;

use crate::error::{Error, Result};

/// One mmap of this process, owned: bounds-checked byte copies in and out,
/// `munmap` on drop. What `HostMemory` and live update's `GuestMemory`
/// (a shared memfd mapping) both are underneath.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    /// What the memory is, for errors ("host memory", "guest memory").
    what: &'static str,
}

// SAFETY: the mapping is owned by this value alone; access goes through
// `&self`/`&mut self` methods that copy bytes, so moving it between threads
// is sound.
unsafe impl Send for Mapping {}
// SAFETY: shared references only read through bounds-checked copies; a
// device (or a peer process) may write the memory concurrently (that is
// what DMA is), which Rust cannot observe as a data race on its own
// references since every access is a byte copy of a raw pointer range.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Takes ownership of what mmap returned for `len` bytes (MAP_FAILED is
    /// an error naming `object`).
    pub(crate) fn adopt(p: *mut libc::c_void, len: usize, what: &'static str, object: impl FnOnce() -> String) -> Result<Self> {
        if p == libc::MAP_FAILED {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM);
            return Err(Error::new(errno, "mmap", object()));
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| Error::new(libc::ENOMEM, "mmap", what))?;
        Ok(Self { ptr, len, what })
    }

    pub(crate) fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn check(&self, offset: usize, n: usize) -> Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::new(libc::EINVAL, "memory access", format!("{} of {:#x} bytes", self.what, self.len))
                .with_detail(format!("{n} bytes at {offset:#x} run past the end"))),
        }
    }

    pub(crate) fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.check(offset, out.len())?;
        // SAFETY: the source range lies inside the live mapping (checked);
        // `out` is a distinct Rust slice of exactly that many bytes.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    }

    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check(offset, data.len())?;
        // SAFETY: the destination range lies inside the live, writable
        // mapping (checked); `data` is a distinct slice of that length.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(offset), data.len()) };
        Ok(())
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range mmap returned; no reference into it
        // outlives `self` (accessors copy).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// Anonymous, private, zero-filled memory. Keep it alive while any DMA
/// mapping refers to it: after `munmap` the address may be reused.
#[derive(Debug)]
pub struct HostMemory {
    map: Mapping,
}

impl HostMemory {
    /// Maps `len` bytes (rounded up to the page size).
    pub fn new(len: usize) -> Result<Self> {
        Self::map(len, 0)
    }

    /// Reserves `len` bytes of address space without committing memory
    /// for it (MAP_NORESERVE): a sparse region, as a VMM reserves guest RAM
    /// it populates on demand. Every page is mapped (and pins) all the same.
    pub fn reserve(len: usize) -> Result<Self> {
        Self::map(len, libc::MAP_NORESERVE)
    }

    fn map(len: usize, extra_flags: i32) -> Result<Self> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let len = len.max(1).div_ceil(page) * page;
        // SAFETY: a fresh private anonymous mapping chosen by the kernel
        // (addr NULL, fd -1); nothing existing is replaced. MAP_FAILED is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | extra_flags,
                -1,
                0,
            )
        };
        Ok(Self { map: Mapping::adopt(p, len, "host memory", || format!("{len} bytes of host memory"))? })
    }

    /// The virtual address to give `VFIO_IOMMU_MAP_DMA`.
    pub fn addr(&self) -> u64 {
        self.map.addr()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Copies `out.len()` bytes from `offset`.
    pub fn read(&self, offset: usize, out: &mut [u8]) -> Result<()> {
        self.map.read(offset, out)
    }

    /// Copies `data` to `offset`.
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.map.write(offset, data)
    }
}

/// For tests: the address of a 64 GiB reserved region, 1 GiB aligned, that
/// lives as long as the process. Tests place fake guest RAM in it, so what
/// they map is mapped, as the kernel (and the mock) require.
#[cfg(test)]
pub(crate) fn test_va() -> u64 {
    static REGION: std::sync::OnceLock<HostMemory> = std::sync::OnceLock::new();
    let m = REGION.get_or_init(|| HostMemory::reserve(65 << 30).expect("reserving 65 GiB of address space"));
    m.addr().next_multiple_of(1 << 30)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_page_aligned_zeroed_and_rounded_up() {
        let m = HostMemory::new(100).unwrap();
        assert_eq!((m.addr() % 4096, m.len()), (0, 4096));
        let mut b = [1u8; 8];
        m.read(0, &mut b).unwrap();
        assert_eq!(b, [0; 8]);
    }

    #[test]
    fn an_access_past_the_end_fails_with_einval() {
        let m = HostMemory::new(4096).unwrap();
        assert_eq!(m.write(4090, &[0; 8]).unwrap_err().code(), "EINVAL");
    }
}
