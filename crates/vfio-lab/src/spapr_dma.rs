//! Kernel-only sPAPR checks in the pseries guest: the PCI topology the PHBs
//! produce, and DMA by QEMU's edu device through the emulated TCE tables,
//! driven through vfio-core's `TceContainer` on the real kernel.
//!
//! QEMU 7.2's edu registers are DEVICE_NATIVE_ENDIAN, i.e. big-endian on a
//! ppc64 target: a little-endian guest reads its id 0x010000ed as
//! 0xed000001. The swap is detected from the id register, not assumed.
//! Transfers stay at 2048 bytes: 7.2's edu aborts QEMU on 4096.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use vfio_core::error::errno_name;
use vfio_core::spapr::{DmaDirection, TceContainer, TceVersion};
use vfio_core::uapi;

use crate::spapr::{errno, find_edus, group_of, last_errno, Bench, Buffer, KernelBench, Pe, Rec, Stop};

const PAGE: u64 = 0x1000;
const LEN: usize = 2048;
const EDU_BUF: u64 = 0x40000;
const EDU_ID: u32 = 0x0100_00ed;

/// BAR0 and config space of one edu, through its VFIO device fd (pread/pwrite).
struct Edu {
    fd: OwnedFd,
    bar0: u64,
    config: u64,
    swap: bool,
}

fn region_offset(fd: &OwnedFd, index: u32) -> Result<u64, i32> {
    let mut info = uapi::vfio_region_info {
        argsz: std::mem::size_of::<uapi::vfio_region_info>() as u32,
        index,
        ..Default::default()
    };
    // SAFETY: `info` is a live vfio_region_info whose argsz is its own size.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), uapi::VFIO_DEVICE_GET_REGION_INFO as _, &mut info as *mut _) };
    if r < 0 {
        return Err(last_errno());
    }
    Ok(info.offset)
}

impl Edu {
    fn open(bench: &KernelBench, group_index: usize, bdf: &str) -> Result<Self, i32> {
        let name = CString::new(bdf).expect("no NUL in a BDF");
        // SAFETY: VFIO_GROUP_GET_DEVICE_FD reads the NUL-terminated name, which outlives the call.
        let fd = unsafe { libc::ioctl(bench.group_fd(group_index), uapi::VFIO_GROUP_GET_DEVICE_FD as _, name.as_ptr()) };
        if fd < 0 {
            return Err(last_errno());
        }
        // SAFETY: a new descriptor owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let bar0 = region_offset(&fd, uapi::VFIO_PCI_BAR0_REGION_INDEX)?;
        let config = region_offset(&fd, uapi::VFIO_PCI_CONFIG_REGION_INDEX)?;
        let mut edu = Self { fd, bar0, config, swap: false };
        let id = edu.read32(0)?;
        edu.swap = id == EDU_ID.swap_bytes();
        Ok(edu)
    }

    fn pread(&self, offset: u64, buf: &mut [u8]) -> Result<(), i32> {
        // SAFETY: `buf` is a live, writable slice of exactly the length passed.
        let n = unsafe { libc::pread(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset as i64) };
        if n != buf.len() as isize {
            return Err(if n < 0 { last_errno() } else { libc::EIO });
        }
        Ok(())
    }

    fn pwrite(&self, offset: u64, buf: &[u8]) -> Result<(), i32> {
        // SAFETY: `buf` is a live slice of exactly the length passed.
        let n = unsafe { libc::pwrite(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset as i64) };
        if n != buf.len() as isize {
            return Err(if n < 0 { last_errno() } else { libc::EIO });
        }
        Ok(())
    }

    fn read32(&self, reg: u64) -> Result<u32, i32> {
        let mut b = [0u8; 4];
        self.pread(self.bar0 + reg, &mut b)?;
        let v = u32::from_le_bytes(b);
        Ok(if self.swap { v.swap_bytes() } else { v })
    }

    fn write64(&self, reg: u64, v: u64) -> Result<(), i32> {
        let v = if self.swap { v.swap_bytes() } else { v };
        self.pwrite(self.bar0 + reg, &v.to_le_bytes())
    }

    /// Sets Bus Master Enable (command register bit 2): no DMA without it.
    fn enable_bus_master(&self) -> Result<(), i32> {
        let mut cmd = [0u8; 2];
        self.pread(self.config + 4, &mut cmd)?;
        let v = u16::from_le_bytes(cmd) | 0x4;
        self.pwrite(self.config + 4, &v.to_le_bytes())
    }

    /// One edu DMA: `to_ram` copies from its buffer to `ram_iova`, else the
    /// other way. Waits for the command register's busy bit to clear.
    fn dma(&self, ram_iova: u64, to_ram: bool) -> Result<(), String> {
        let e = |what: &str, err: i32| format!("edu {what}: {}", errno_name(err));
        let (src, dst) = if to_ram { (EDU_BUF, ram_iova) } else { (ram_iova, EDU_BUF) };
        self.write64(0x80, src).map_err(|x| e("DMA source", x))?;
        self.write64(0x88, dst).map_err(|x| e("DMA destination", x))?;
        self.write64(0x90, LEN as u64).map_err(|x| e("DMA count", x))?;
        self.write64(0x98, if to_ram { 3 } else { 1 }).map_err(|x| e("DMA command", x))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.read32(0x98).map_err(|x| e("DMA status", x))? & 1 != 0 {
            if Instant::now() > deadline {
                return Err("edu DMA still busy after 5 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..LEN).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

/// Opens pe's container and device, v2, through vfio-core.
fn open_pe(pe: &Pe, rec: &mut Rec) -> Result<(KernelBench, Edu), Stop> {
    let mut bench = KernelBench::open(std::slice::from_ref(pe)).map_err(Stop)?;
    rec.must(format!("SET_CONTAINER group {}", pe.group), bench.attach(0), |_| String::new())?;
    rec.must("SET_IOMMU SPAPR_TCE_v2", bench.set_iommu(true), |_| String::new())?;
    let edu = rec.must(format!("GET_DEVICE_FD {}", pe.bdf), Edu::open(&bench, 0, &pe.bdf), |e| {
        format!("byte-swapped registers: {}", e.swap)
    })?;
    rec.must("enable bus mastering", edu.enable_bus_master(), |_| String::new())?;
    Ok((bench, edu))
}

/// A round trip through `window` (None: the default 32-bit window), then the
/// two DMAs that must not land: into an unmapped TCE and into a read-only one.
fn round_trip(pe: &Pe, window: Option<(u32, u64)>, negative: bool, rec: &mut Rec) -> Result<(), Stop> {
    let (mut bench, edu) = open_pe(pe, rec)?;
    let mut c = rec.must("vfio-core TceContainer::new v2", errno(TceContainer::new(bench.ops(), TceVersion::V2, pe.group, 12)), |_| {
        String::new()
    })?;
    let base = match window {
        None => 0x10_0000,
        Some((shift, size)) => {
            let w = rec.must(format!("vfio-core create_window shift={shift} size={size:#x}"), errno(c.create_window(shift, size)), |w| {
                format!("start={:#x}", w.start)
            })?;
            w.start
        }
    };
    // page 0: source (device reads), page 1: destination (device writes),
    // page 2: never mapped, page 3: mapped read-only.
    let mut buf = Buffer::new(4 * PAGE as usize, PAGE as usize);
    let data = pattern(base as u8 ^ 0x5a);
    buf.bytes()[..LEN].copy_from_slice(&data);
    rec.must("vfio-core register 4 pages", errno(c.register(buf.addr, buf.size)), |_| String::new())?;
    rec.must("vfio-core map page 0 READ at base", errno(c.map(base, buf.addr, PAGE, DmaDirection::ToDevice)), |_| String::new())?;
    rec.must(
        "vfio-core map page 1 WRITE at base+0x1000",
        errno(c.map(base + PAGE, buf.addr + PAGE, PAGE, DmaDirection::FromDevice)),
        |_| String::new(),
    )?;
    rec.must(
        "vfio-core map page 3 READ at base+0x3000",
        errno(c.map(base + 3 * PAGE, buf.addr + 3 * PAGE, PAGE, DmaDirection::ToDevice)),
        |_| String::new(),
    )?;
    edu.dma(base, false).map_err(Stop)?;
    edu.dma(base + PAGE, true).map_err(Stop)?;
    let got = buf.bytes()[PAGE as usize..PAGE as usize + LEN].to_vec();
    let same = got == data;
    rec.check(
        format!("edu copied {LEN} bytes from IOVA {base:#x} into its buffer and back to IOVA {:#x}", base + PAGE),
        same,
        if same { String::new() } else { format!("first bytes: wanted {:02x?}, got {:02x?}", &data[..8], &got[..8]) },
    );
    if negative {
        edu.dma(base + 2 * PAGE, true).map_err(Stop)?;
        let untouched = buf.bytes()[2 * PAGE as usize..3 * PAGE as usize].iter().all(|&b| b == 0);
        rec.check(format!("a DMA to the unmapped IOVA {:#x} did not land", base + 2 * PAGE), untouched, "");
        edu.dma(base + 3 * PAGE, true).map_err(Stop)?;
        let untouched = buf.bytes()[3 * PAGE as usize..4 * PAGE as usize].iter().all(|&b| b == 0);
        rec.check(format!("a device write into the read-only TCE at {:#x} did not land", base + 3 * PAGE), untouched, "");
        // After unmap the destination page is unreachable too.
        buf.bytes()[PAGE as usize..2 * PAGE as usize].fill(0);
        rec.must("vfio-core unmap page 1", errno(c.unmap(base + PAGE, PAGE)), |_| String::new())?;
        edu.dma(base + PAGE, true).map_err(Stop)?;
        let untouched = buf.bytes()[PAGE as usize..2 * PAGE as usize].iter().all(|&b| b == 0);
        rec.check(format!("after unmap a DMA to {:#x} did not land", base + PAGE), untouched, "");
    }
    rec.must("vfio-core release (unmap, then unregister)", errno(c.release()), |_| String::new())?;
    if let Some((_, _)) = window {
        rec.must("vfio-core remove_window", errno(c.remove_window(base)), |_| String::new())?;
    }
    Ok(())
}

fn discovery(phbs: usize, rec: &mut Rec) -> Result<(), Stop> {
    let mut groups_by_domain: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    let dir = std::fs::read_dir("/sys/bus/pci/devices").map_err(|e| Stop(format!("cannot list PCI devices: {e}")))?;
    let mut seen = Vec::new();
    for entry in dir.flatten() {
        let bdf = entry.file_name().to_string_lossy().into_owned();
        let group = group_of(&bdf).map_err(Stop)?;
        seen.push(format!("{bdf}:group{group}"));
        groups_by_domain.entry(bdf[..4].to_string()).or_default().insert(group);
    }
    seen.sort();
    let all: BTreeSet<u32> = groups_by_domain.values().flatten().copied().collect();
    rec.check(format!("{phbs} PHBs give {phbs} PCI domains"), groups_by_domain.len() == phbs, seen.join(" "));
    rec.check("each PCI domain is one IOMMU group", groups_by_domain.values().all(|g| g.len() == 1), seen.join(" "));
    rec.check("no two domains share a group", all.len() == groups_by_domain.len(), seen.join(" "));
    let edus = find_edus().map_err(Stop)?;
    rec.check(format!("one edu per PHB ({phbs})"), edus.len() == phbs, edus.join(" "));
    Ok(())
}

/// Every kernel-only case, in order: (name, record, aborted).
pub fn run_all(phbs: usize) -> Vec<(String, Rec, Option<String>)> {
    let mut out = Vec::new();
    let mut case = |name: String, f: &mut dyn FnMut(&mut Rec) -> Result<(), Stop>| {
        let mut rec = Rec::new();
        let aborted = f(&mut rec).err().map(|s| s.0);
        out.push((name, rec, aborted));
    };
    case(format!("kernel-only: {phbs} PHB(s) give one PCI domain and one IOMMU group each"), &mut |r| discovery(phbs, r));
    let pes: Vec<Pe> = match find_edus() {
        Ok(edus) => edus.iter().filter_map(|b| group_of(b).ok().map(|g| Pe { bdf: b.clone(), group: g })).collect(),
        Err(_) => Vec::new(),
    };
    for (i, pe) in pes.iter().enumerate() {
        case(format!("kernel-only: pe{i} edu DMA round trip through the default 32-bit window, and DMA to unmapped or read-only TCEs does not land"), &mut |r| {
            round_trip(pe, None, true, r)
        });
        case(format!("kernel-only: pe{i} edu DMA round trip through a dynamic 64-bit window of 4 KiB TCEs"), &mut |r| {
            round_trip(pe, Some((12, 1 << 30)), true, r)
        });
    }
    out
}
