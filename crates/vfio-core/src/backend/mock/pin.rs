//! Page pinning as the kernel does it when memory is handed to an IOMMU:
//! type1's `vfio_pin_pages_remote` + `vfio_lock_acct`
//! (drivers/vfio/vfio_iommu_type1.c), sPAPR's `mm_iommu_do_alloc`
//! (arch/powerpc/mm/book3s64/iommu_api.c) and `tce_iommu_use_page`
//! (drivers/vfio/vfio_iommu_spapr_tce.c).
//!
//! Two questions decide a pin: is every page of the range mapped in this
//! process (else `pin_user_pages*` fails and the ioctl answers EFAULT), and
//! does the mm's locked memory stay within RLIMIT_MEMLOCK (else ENOMEM,
//! unless the caller has CAP_IPC_LOCK).
//!
//! Whether a range is mapped is asked with `mincore(2)`: one syscall per
//! 64 MiB of range that walks the process's VMAs and fails with ENOMEM at
//! the first hole, the same VMA lookup GUP does. It touches no page (a
//! `process_vm_readv` probe would fault every page in and copy it;
//! `/proc/self/maps` costs tens of microseconds to read and parse for each
//! map, and is stale as soon as it is read). What mincore does not see is
//! a mapping's protection: a PROT_NONE range, or a read-only one mapped
//! with WRITE, passes here where GUP answers EFAULT (listed in the mock's
//! header as the one remaining pinning difference).
//!
//! `mm->locked_vm` is modelled per mock host ([`MockMm`]): the pages every
//! mock IOMMU of that host has pinned, plus what the process itself has
//! locked (`VmLck`, mlock) when a limit applies. The limit and the
//! capability are read from the calling thread at each call, as
//! `rlimit(RLIMIT_MEMLOCK)` and `capable(CAP_IPC_LOCK)` are in the kernel,
//! unless the host's [`MemlockPolicy`] fixes them.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::super::{Errno, SysResult};

/// The page size pins are counted in (PAGE_SIZE of the process's kernel).
pub fn host_page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).max(4096) as u64
}

/// Whether every page of [vaddr, vaddr + size) is mapped in this process.
/// `vaddr` must be page aligned (callers check alignment first, as the
/// kernel does before it pins); a range that wraps is not mapped.
pub fn range_mapped(vaddr: u64, size: u64) -> bool {
    const CHUNK_PAGES: u64 = 16 * 1024;
    let page = host_page_size();
    if !vaddr.is_multiple_of(page) || vaddr.checked_add(size).is_none() {
        return false;
    }
    let mut vec = [0u8; CHUNK_PAGES as usize];
    let mut at = vaddr;
    let end = vaddr + size;
    while at < end {
        let len = (end - at).min(CHUNK_PAGES * page);
        loop {
            // SAFETY: mincore only reads the process's page tables for
            // [at, at + len) and writes one byte per page of that range into
            // `vec`, which holds CHUNK_PAGES >= len / page bytes.
            let r = unsafe { libc::mincore(at as *mut libc::c_void, len as usize, vec.as_mut_ptr()) };
            if r == 0 {
                break;
            }
            // EAGAIN: the kernel was short of memory for a moment; ask again.
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN) {
                return false;
            }
        }
        at += len;
    }
    true
}

/// Where a mock host's RLIMIT_MEMLOCK and CAP_IPC_LOCK come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MemlockPolicy {
    /// The calling thread's, read at each call, as the kernel reads them.
    #[default]
    Process,
    /// A fixed limit in bytes (`None`: unlimited, as with CAP_IPC_LOCK),
    /// for tests that must not change the process's own limits. The
    /// process's own locked memory is not counted against it.
    Fixed(Option<u64>),
}

/// The simulated `mm_struct`'s `locked_vm`: pages pinned by this mock
/// host's IOMMUs, shared by all its containers as one process's mm is.
#[derive(Debug, Default)]
pub struct MockMm {
    locked: AtomicU64,
    policy: MemlockPolicy,
    /// `mm->context.iommu_group_mem_list`: sPAPR v2's preregistered
    /// regions belong to the process, not to a container: every container
    /// of the process finds them (`mm_iommu_get`, `mm_iommu_lookup`), and
    /// one that no container lists any more stays until the mm dies.
    pub(crate) iommu_mem: Mutex<Vec<super::spapr::MmIommuMem>>,
}

/// RLIMIT_MEMLOCK in pages, or `None` when the caller may lock without
/// limit: one reading of the policy, kept for one ioctl (or one batch).
#[derive(Debug, Clone, Default)]
pub struct Memlock {
    limit_pages: Option<u64>,
    /// Pages the process has locked itself (VmLck), counted in locked_vm.
    process_locked: u64,
    /// A range this call has already found mapped: within one batch (one
    /// lock of the mock host) the entries of a guest's RAM lie close
    /// together, so one mincore of a window ahead answers for many.
    known_mapped: Cell<(u64, u64)>,
    /// Look ahead only for a batch; a lone map asks for its own range.
    lookahead: bool,
}

impl Memlock {
    /// The same reading, for the entries of one batch.
    pub fn for_batch(self) -> Self {
        Self { lookahead: true, ..self }
    }

    /// Whether [vaddr, vaddr + size) is mapped, asking mincore for a window
    /// of up to `LOOKAHEAD` bytes from `vaddr` when that answers for the
    /// entries that follow, and remembering it.
    fn mapped(&self, vaddr: u64, size: u64) -> bool {
        const LOOKAHEAD: u64 = 4 << 20;
        let Some(end) = vaddr.checked_add(size) else { return false };
        let (k0, k1) = self.known_mapped.get();
        if vaddr >= k0 && end <= k1 {
            return true;
        }
        if self.lookahead && size < LOOKAHEAD {
            if let Some(wide) = vaddr.checked_add(LOOKAHEAD) {
                if range_mapped(vaddr, LOOKAHEAD) {
                    self.known_mapped.set((vaddr, wide));
                    return true;
                }
            }
        }
        let ok = range_mapped(vaddr, size);
        if ok {
            self.known_mapped.set((vaddr, end));
        }
        ok
    }
}

const CAP_IPC_LOCK: u32 = 14;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// `capable(CAP_IPC_LOCK)`: the calling thread's effective set.
fn has_ipc_lock() -> bool {
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget reads `header` and writes two CapData entries (the
    // version 3 layout) into `data`, which holds exactly two.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, data.as_mut_ptr()) };
    r == 0 && data[0].effective & (1 << CAP_IPC_LOCK) != 0
}

/// RLIMIT_MEMLOCK's soft limit in bytes, `None` when infinite.
fn memlock_rlimit() -> Option<u64> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into `rl`.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rl) } != 0 || rl.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(rl.rlim_cur)
}

/// This process's own locked memory (`VmLck` in /proc/self/status), in pages.
fn process_locked_pages(page: u64) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0);
    kb * 1024 / page
}

impl MockMm {
    pub fn new(policy: MemlockPolicy) -> Self {
        Self { locked: AtomicU64::new(0), policy, iommu_mem: Mutex::default() }
    }

    /// Pages the mock's IOMMUs hold pinned and accounted now.
    pub fn locked_pages(&self) -> u64 {
        self.locked.load(Ordering::Relaxed)
    }

    /// Reads the limit that applies to the calling thread now.
    pub fn memlock(&self) -> Memlock {
        let page = host_page_size();
        match self.policy {
            MemlockPolicy::Fixed(limit) => Memlock { limit_pages: limit.map(|b| b / page), ..Memlock::default() },
            MemlockPolicy::Process => {
                if has_ipc_lock() {
                    return Memlock::default();
                }
                match memlock_rlimit() {
                    None => Memlock::default(),
                    Some(bytes) => Memlock {
                        limit_pages: Some(bytes / page),
                        process_locked: process_locked_pages(page),
                        ..Memlock::default()
                    },
                }
            }
        }
    }

    /// Whether a pin by the calling thread is exempt from accounting:
    /// `capable(CAP_IPC_LOCK)` (iommufd's iopt_alloc_pages then chooses
    /// IOPT_PAGES_ACCOUNT_NONE), or a fixed policy without a limit.
    pub fn ipc_lock_exempt(&self) -> bool {
        match self.policy {
            MemlockPolicy::Fixed(limit) => limit.is_none(),
            MemlockPolicy::Process => has_ipc_lock(),
        }
    }

    /// RLIMIT_MEMLOCK in pages with no capability bypass, as iommufd's
    /// incr_user_locked_vm and `__account_locked_vm(.., bypass_rlim=false)`
    /// read it; `None` when infinite.
    pub fn rlimit_pages(&self) -> Option<u64> {
        let page = host_page_size();
        match self.policy {
            MemlockPolicy::Fixed(limit) => limit.map(|b| b / page),
            MemlockPolicy::Process => memlock_rlimit().map(|b| b / page),
        }
    }

    /// `__account_locked_vm(mm, pages, true, task, false)`: charges `pages`
    /// to locked_vm unless that passes RLIMIT_MEMLOCK (ENOMEM, nothing
    /// charged); no CAP_IPC_LOCK bypass (iommufd's IOPT_PAGES_ACCOUNT_MM).
    pub fn charge_against_rlimit(&self, pages: u64) -> SysResult<()> {
        if let Some(limit) = self.rlimit_pages() {
            let own = match self.policy {
                MemlockPolicy::Fixed(_) => 0,
                MemlockPolicy::Process => process_locked_pages(host_page_size()),
            };
            if self.locked_pages().saturating_add(own).saturating_add(pages) > limit {
                return Err(Errno(libc::ENOMEM));
            }
        }
        self.locked.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }

    /// `vfio_lock_acct(dma, npage, true)` / `account_locked_vm(mm, npage,
    /// true)`: charges `pages`, or fails with ENOMEM (charging nothing) when
    /// locked_vm would pass the limit.
    pub fn charge(&self, lock: &Memlock, pages: u64) -> SysResult<()> {
        let now = self.locked.load(Ordering::Relaxed);
        if let Some(limit) = lock.limit_pages {
            if now.saturating_add(lock.process_locked).saturating_add(pages) > limit {
                return Err(Errno(libc::ENOMEM));
            }
        }
        self.locked.fetch_add(pages, Ordering::Relaxed);
        Ok(())
    }

    /// The matching decrement, on unmap, unregister and release.
    pub fn uncharge(&self, pages: u64) {
        let _ = self.locked.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(pages)));
    }
}

/// type1's pin of [vaddr, vaddr + size) for a map (`vfio_pin_map_dma`):
/// EFAULT when a page is not mapped, ENOMEM when locked_vm would pass the
/// limit; on success the pages are charged to `mm`.
///
/// `vfio_pin_pages_remote` pins a batch of pages, then accounts them one by
/// one, so whichever comes first in the range decides: the page that would
/// pass the limit (ENOMEM, if every page up to it is mapped) or the first
/// hole (EFAULT, when the next batch starts at it).
pub fn pin_type1(mm: &MockMm, lock: &Memlock, vaddr: u64, size: u64) -> SysResult<()> {
    let page = host_page_size();
    let pages = size.div_ceil(page);
    if let Some(limit) = lock.limit_pages {
        let allowed = limit.saturating_sub(mm.locked_pages().saturating_add(lock.process_locked));
        if allowed < pages {
            // Page number `allowed` is the one refused: ENOMEM if it and
            // every page before it could be pinned.
            let through_refused = (allowed + 1).saturating_mul(page);
            return Err(Errno(if lock.mapped(vaddr, through_refused) { libc::ENOMEM } else { libc::EFAULT }));
        }
    }
    if !lock.mapped(vaddr, size) {
        return Err(Errno(libc::EFAULT));
    }
    mm.charge(lock, pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_anonymous_mapping_is_mapped_without_being_touched() {
        let m = crate::memory::HostMemory::new(64 * 4096).unwrap();
        assert!(range_mapped(m.addr(), 64 * 4096));
    }

    #[test]
    fn address_zero_is_not_mapped() {
        assert!(!range_mapped(0, 4096));
    }

    #[test]
    fn a_range_running_past_the_end_of_a_mapping_is_not_mapped() {
        let m = crate::memory::HostMemory::new(4 * 4096).unwrap();
        // SAFETY: unmaps the last page of a mapping this test owns; the
        // HostMemory's own munmap of the whole range ignores the hole.
        unsafe { libc::munmap((m.addr() + 3 * 4096) as *mut libc::c_void, 4096) };
        assert!(range_mapped(m.addr(), 3 * 4096));
        assert!(!range_mapped(m.addr(), 4 * 4096));
    }

    #[test]
    fn a_hole_past_the_first_mincore_chunk_is_found() {
        let len = 80u64 << 20;
        let m = crate::memory::HostMemory::new(len as usize).unwrap();
        let hole = m.addr() + (70 << 20);
        // SAFETY: unmaps one page inside a mapping this test owns.
        unsafe { libc::munmap(hole as *mut libc::c_void, 4096) };
        assert!(range_mapped(m.addr(), 70 << 20));
        assert!(!range_mapped(m.addr(), len));
    }

    #[test]
    fn over_the_limit_type1_answers_enomem_when_the_refused_page_is_mapped_and_efault_when_a_hole_comes_first() {
        let m = crate::memory::HostMemory::new(8 * 4096).unwrap();
        // SAFETY: unmaps one page inside a mapping this test owns.
        unsafe { libc::munmap((m.addr() + 6 * 4096) as *mut libc::c_void, 4096) };
        let mm = MockMm::new(MemlockPolicy::Fixed(Some(4 * host_page_size())));
        let lock = mm.memlock();
        assert_eq!(pin_type1(&mm, &lock, m.addr(), 8 * 4096), Err(Errno(libc::ENOMEM)));
        let mm = MockMm::new(MemlockPolicy::Fixed(Some(7 * host_page_size())));
        assert_eq!(pin_type1(&mm, &lock_of(&mm), m.addr(), 8 * 4096), Err(Errno(libc::EFAULT)));
        assert_eq!(mm.locked_pages(), 0);
    }

    fn lock_of(mm: &MockMm) -> Memlock {
        mm.memlock()
    }

    #[test]
    fn a_fixed_limit_refuses_the_page_that_passes_it_and_charges_nothing() {
        let mm = MockMm::new(MemlockPolicy::Fixed(Some(4 * host_page_size())));
        let lock = mm.memlock();
        mm.charge(&lock, 3).unwrap();
        assert_eq!(mm.charge(&lock, 2), Err(Errno(libc::ENOMEM)));
        assert_eq!(mm.locked_pages(), 3);
        mm.uncharge(3);
        mm.charge(&lock, 4).unwrap();
    }

    #[test]
    fn no_limit_charges_without_bound() {
        let mm = MockMm::new(MemlockPolicy::Fixed(None));
        mm.charge(&mm.memlock(), u64::MAX / 2).unwrap();
        assert_eq!(mm.locked_pages(), u64::MAX / 2);
    }
}
