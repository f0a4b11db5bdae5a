//! `GuestMemory`: guest RAM in a memfd, mapped shared, so that a second
//! process can map the same pages (what QEMU's memory-backend-memfd with
//! `share=on` gives cpr-transfer). A live hand-over passes the memfd; the
//! new process maps it and gives the IOMMU its own addresses for the pages
//! that stay pinned all along.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::error::{Error, Result};
use crate::memory::Mapping;

/// A memfd and one shared mapping of its first `len` bytes. The mapping
/// is unmapped before the memfd closes (field order).
#[derive(Debug)]
pub struct GuestMemory {
    map: Mapping,
    fd: OwnedFd,
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

impl GuestMemory {
    /// A new memfd of `len` bytes (rounded up to the page size), mapped shared.
    pub fn create(name: &str, len: usize) -> Result<Self> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| Error::new(libc::EINVAL, "memfd_create", format!("guest memory '{name}'")).with_detail("the name holds a NUL byte"))?;
        // SAFETY: cname is a valid NUL-terminated string for the call's duration.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(Error::new(last_errno(), "memfd_create", format!("guest memory '{name}'")));
        }
        // SAFETY: memfd_create just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = len.max(1).div_ceil(page_size()) * page_size();
        // SAFETY: ftruncate on a descriptor this function owns.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) } != 0 {
            return Err(Error::new(last_errno(), "ftruncate", format!("guest memory '{name}' of {len:#x} bytes")));
        }
        Self::map(fd, len)
    }

    /// Maps `len` bytes of a memfd another process sent. Refuses a
    /// descriptor that is not a memfd (only a memfd answers F_GET_SEALS) or
    /// that is shorter than `len`: the pages behind every mapping must be
    /// the very pages the old process mapped.
    pub fn from_fd(fd: OwnedFd, len: usize) -> Result<Self> {
        let object = format!("received guest memory fd {}", fd.as_raw_fd());
        // SAFETY: fcntl with an int command on a descriptor `fd` owns.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) } < 0 {
            return Err(Error::new(last_errno(), "fcntl(F_GET_SEALS)", object)
                .with_detail("not a memfd: only memory backed by a shareable file can be handed over"));
        }
        // SAFETY: st is written by fstat before it is read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: fstat writes one struct stat into `st`.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(Error::new(last_errno(), "fstat", object));
        }
        if (st.st_size as u64) < len as u64 || len == 0 || !len.is_multiple_of(page_size()) {
            return Err(Error::new(libc::EINVAL, "mmap", object)
                .with_detail(format!("the description says {len:#x} bytes, the file holds {:#x}", st.st_size)));
        }
        Self::map(fd, len)
    }

    fn map(fd: OwnedFd, len: usize) -> Result<Self> {
        // SAFETY: a new shared mapping of `len` bytes of a file this value
        // owns, at an address the kernel chooses; MAP_FAILED is checked.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd.as_raw_fd(), 0)
        };
        let map = Mapping::adopt(p, len, "guest memory", || format!("guest memory fd {} ({len:#x} bytes, shared)", fd.as_raw_fd()))?;
        Ok(Self { map, fd })
    }

    /// This process's address of the memory's first byte.
    pub fn addr(&self) -> u64 {
        self.map.addr()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The memfd, for passing to another process.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Where host address `vaddr` lies in the memory, if `size` bytes from
    /// there lie inside it.
    pub fn offset_of(&self, vaddr: u64, size: u64) -> Option<u64> {
        let off = vaddr.checked_sub(self.addr())?;
        (off.checked_add(size)? <= self.map.len() as u64).then_some(off)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_one_memfd_see_the_same_bytes() {
        let a = GuestMemory::create("vfiokit-test", 8192).unwrap();
        // SAFETY: dup of a descriptor `a` keeps open.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(a.raw_fd())) };
        let b = GuestMemory::from_fd(dup, 8192).unwrap();
        assert_ne!(a.addr(), b.addr());
        a.write(4096, b"shared").unwrap();
        let mut got = [0u8; 6];
        b.read(4096, &mut got).unwrap();
        assert_eq!(&got, b"shared");
    }

    #[test]
    fn a_file_that_is_not_a_memfd_is_refused_as_not_shareable() {
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let err = GuestMemory::from_fd(f.into(), 4096).unwrap_err();
        assert_eq!(err.code(), "EINVAL");
        assert!(err.detail.unwrap().contains("not a memfd"));
    }

    #[test]
    fn a_memfd_shorter_than_described_is_refused() {
        let a = GuestMemory::create("vfiokit-test", 4096).unwrap();
        // SAFETY: dup of a descriptor `a` keeps open.
        let dup = unsafe { OwnedFd::from_raw_fd(libc::dup(a.raw_fd())) };
        assert_eq!(GuestMemory::from_fd(dup, 8192).unwrap_err().code(), "EINVAL");
    }

    #[test]
    fn an_address_range_is_inside_only_when_it_ends_inside() {
        let a = GuestMemory::create("vfiokit-test", 8192).unwrap();
        assert_eq!(a.offset_of(a.addr() + 4096, 4096), Some(4096));
        assert_eq!(a.offset_of(a.addr() + 4096, 8192), None);
        assert_eq!(a.offset_of(a.addr() - 4096, 4096), None);
    }
}
