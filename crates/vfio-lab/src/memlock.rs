//! A caller without CAP_IPC_LOCK under a low RLIMIT_MEMLOCK, for the cases
//! that check what the kernel charges to locked_vm (and the mock with them:
//! it reads the same limit and capability of the calling thread).

/// Lowers RLIMIT_MEMLOCK and drops CAP_IPC_LOCK from this thread's
/// effective set while alive; both come back on drop, however the case ends.
pub struct LowMemlock {
    old: libc::rlimit,
    pub caps: Option<[u32; 6]>,
}

const CAP_IPC_LOCK: u32 = 14;

fn capget() -> Option<[u32; 6]> {
    let mut header = [0x2008_0522u32, 0];
    let mut data = [0u32; 6];
    // SAFETY: capget reads the two-word header and writes two 3-word
    // (effective, permitted, inheritable) entries into `data`.
    let r = unsafe { libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()) };
    (r == 0).then_some(data)
}

fn capset(data: &[u32; 6]) -> bool {
    let mut header = [0x2008_0522u32, 0];
    // SAFETY: capset reads the header and two 3-word entries from `data`.
    unsafe { libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()) == 0 }
}

/// This process's locked_vm now (VmLck in /proc/self/status, which counts
/// the pages VFIO has pinned and charged), in bytes.
pub fn locked_now() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmLck:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

impl LowMemlock {
    pub fn new(bytes: u64) -> Self {
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit read or write one rlimit struct.
        unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut old) };
        let low = libc::rlimit { rlim_cur: bytes.min(old.rlim_max), rlim_max: old.rlim_max };
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &low) };
        let caps = capget();
        if let Some(mut d) = caps {
            d[0] &= !(1 << CAP_IPC_LOCK);
            capset(&d);
        }
        Self { old, caps }
    }
}

impl Drop for LowMemlock {
    fn drop(&mut self) {
        if let Some(d) = &self.caps {
            capset(d);
        }
        // SAFETY: restores the rlimit read in `new`.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &self.old) };
    }
}

