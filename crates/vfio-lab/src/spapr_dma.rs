//! DMA by QEMU's edu through TCE windows, driven through vfio-core
//! (`Group::device`, `TceContainer` over `spapr::ops_for`) on either backend:
//! in the pseries guest the data really crosses QEMU's emulated TCE tables;
//! on the host the mock's edu walks `MockSpapr`'s TCEs. Both record the same
//! steps; each side's checks must hold. The sysfs discovery case reads the
//! guest's /sys and runs only on the kernel.
//!
//! QEMU 7.2's edu registers are DEVICE_NATIVE_ENDIAN, big-endian on a ppc64
//! target: a little-endian guest reads the id 0x010000ed as 0xed000001. The
//! swap is detected from the id register, not assumed. Transfers stay at
//! 2048 bytes: 7.2's edu stops QEMU on 4096.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use vfio_core::spapr::{DmaDirection, TceContainer, TceVersion};
use vfio_core::uapi;
use vfio_core::{Device, RegionInfo};

use crate::edu::{
    EDU_BUFFER, EDU_DMA_CMD, EDU_DMA_COUNT, EDU_DMA_DST, EDU_DMA_RUN, EDU_DMA_SRC, EDU_DMA_TO_RAM, EDU_ID, EDU_ID_VALUE,
};
use crate::spapr::{errno, find_edus, group_of, group_status, with_raw_fds, Bench, Buffer, Rec, Stop, World};

const PAGE: u64 = 0x1000;
const LEN: usize = 2048;
pub const KERNEL_ONLY: &str = "kernel-only: ";

/// BAR0 and config space of one edu, through its VFIO device.
struct Edu {
    dev: Device,
    bar0: RegionInfo,
    swap: bool,
    id: u32,
    /// The id register as the CPU reads it, before any swap.
    raw_id: u32,
}

impl Edu {
    fn open(dev: Device) -> Result<Self, i32> {
        let bar0 = dev.region_info(uapi::VFIO_PCI_BAR0_REGION_INDEX).map_err(|e| e.errno)?;
        let mut edu = Self { dev, bar0, swap: false, id: 0, raw_id: 0 };
        let raw = edu.read32(EDU_ID)?;
        edu.raw_id = raw;
        edu.swap = raw == EDU_ID_VALUE.swap_bytes();
        edu.id = if edu.swap { raw.swap_bytes() } else { raw };
        Ok(edu)
    }

    fn read32(&self, reg: u64) -> Result<u32, i32> {
        let mut b = [0u8; 4];
        self.dev.read_region(&self.bar0, reg, &mut b).map_err(|e| e.errno)?;
        let v = u32::from_le_bytes(b);
        Ok(if self.swap { v.swap_bytes() } else { v })
    }

    fn write64(&self, reg: u64, v: u64) -> Result<(), i32> {
        let v = if self.swap { v.swap_bytes() } else { v };
        self.dev.write_region(&self.bar0, reg, &v.to_le_bytes()).map_err(|e| e.errno)
    }

    /// Sets Bus Master Enable (command register bit 2): no DMA without it.
    fn enable_bus_master(&self) -> Result<(), i32> {
        let cmd = u16::from_le_bytes(self.dev.read_config::<2>(4).map_err(|e| e.errno)?) | 0x4;
        self.dev.write_config(4, &cmd.to_le_bytes()).map_err(|e| e.errno)
    }

    /// One edu DMA of LEN bytes: `to_ram` copies its buffer to `ram_iova`,
    /// else the other way. Waits for the command register's busy bit.
    fn dma(&self, ram_iova: u64, to_ram: bool) -> Result<(), i32> {
        let (src, dst) = if to_ram { (EDU_BUFFER, ram_iova) } else { (ram_iova, EDU_BUFFER) };
        self.write64(EDU_DMA_SRC, src)?;
        self.write64(EDU_DMA_DST, dst)?;
        self.write64(EDU_DMA_COUNT, LEN as u64)?;
        self.write64(EDU_DMA_CMD, EDU_DMA_RUN | if to_ram { EDU_DMA_TO_RAM } else { 0 })?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while u64::from(self.read32(EDU_DMA_CMD)?) & EDU_DMA_RUN != 0 {
            if Instant::now() > deadline {
                return Err(libc::ETIMEDOUT);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..LEN).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn none<T>(_: &T) -> String {
    String::new()
}

/// A round trip through `window` (None: the default 32-bit window), then the
/// DMAs that must not land: into an unmapped TCE, into a read-only TCE, and
/// into a TCE after its unmap.
fn round_trip(b: &mut Bench, pe: usize, version: TceVersion, window: Option<(u32, u64)>, huge: bool, r: &mut Rec) -> Result<(), Stop> {
    let v2 = version == TceVersion::V2;
    r.must(format!("SET_CONTAINER pe{pe}"), b.attach(pe), none)?;
    r.must(if v2 { "SET_IOMMU SPAPR_TCE_v2" } else { "SET_IOMMU SPAPR_TCE" }, b.set_iommu(v2), none)?;
    let edu = r.must(format!("GET_DEVICE_FD pe{pe}"), b.device(0, pe).and_then(Edu::open), none)?;
    // The byte order itself is compared: QEMU's edu is big-endian on ppc64.
    r.step("edu id register as the CPU reads it", Ok::<_, i32>(edu.raw_id), |v| format!("{v:#010x}"));
    r.check(
        "edu's id register reads 0x010000ed",
        edu.id == EDU_ID_VALUE,
        format!("read {:#010x}; registers byte-swapped: {}", edu.id, edu.swap),
    );
    r.must("enable bus mastering", edu.enable_bus_master(), none)?;
    let mut ops = b.ops();
    let mut c = r.must(format!("vfio-core TceContainer::new {version:?}"), errno(TceContainer::new(&mut *ops, version, pe as u32, 12)), none)?;
    let base = match window {
        None => 0x10_0000,
        Some((shift, size)) => {
            r.must(format!("vfio-core create_window shift={shift} size={size:#x}"), errno(c.create_window(shift, size)), |w| {
                format!("start={:#x}", w.start)
            })?
            .start
        }
    };
    // In TCEs of the window: 0 source (device reads), 1 destination (device
    // writes), 2 never mapped, 3 mapped read-only.
    let tce = window.map_or(PAGE, |(shift, _)| 1u64 << shift);
    let mut buf = if huge {
        r.must("mmap 2 MiB of huge pages", Buffer::huge(2 << 20), none)?
    } else {
        Buffer::new(4 * tce as usize, tce as usize)
    };
    let data = pattern(pe as u8 ^ 0x5a);
    buf.bytes()[..LEN].copy_from_slice(&data);
    // v1 pins each page at map time; v2 needs the memory preregistered.
    if v2 {
        r.must("vfio-core register the buffer", errno(c.register(buf.addr, buf.size)), none)?;
    }
    r.must("vfio-core map TCE 0 READ at base", errno(c.map(base, buf.addr, tce, DmaDirection::ToDevice)), none)?;
    r.must("vfio-core map TCE 1 WRITE", errno(c.map(base + tce, buf.addr + tce, tce, DmaDirection::FromDevice)), none)?;
    r.must("vfio-core map TCE 3 READ", errno(c.map(base + 3 * tce, buf.addr + 3 * tce, tce, DmaDirection::ToDevice)), none)?;
    r.must("edu DMA base -> edu buffer", edu.dma(base, false), none)?;
    r.must("edu DMA edu buffer -> TCE 1", edu.dma(base + tce, true), none)?;
    let got = buf.bytes()[tce as usize..tce as usize + LEN].to_vec();
    r.check(
        format!("edu copied {LEN} bytes from IOVA {base:#x} into its buffer and back to IOVA {:#x}", base + tce),
        got == data,
        if got == data { String::new() } else { format!("first bytes: wanted {:02x?}, got {:02x?}", &data[..8], &got[..8]) },
    );
    r.must("edu DMA edu buffer -> TCE 2 (unmapped)", edu.dma(base + 2 * tce, true), none)?;
    let untouched = buf.bytes()[2 * tce as usize..3 * tce as usize].iter().all(|&x| x == 0);
    r.check(format!("a DMA to the unmapped IOVA {:#x} did not land", base + 2 * tce), untouched, "");
    r.must("edu DMA edu buffer -> TCE 3 (read-only)", edu.dma(base + 3 * tce, true), none)?;
    let untouched = buf.bytes()[3 * tce as usize..4 * tce as usize].iter().all(|&x| x == 0);
    r.check(format!("a device write into the read-only TCE at {:#x} did not land", base + 3 * tce), untouched, "");
    buf.bytes()[tce as usize..2 * tce as usize].fill(0);
    r.must("vfio-core unmap TCE 1", errno(c.unmap(base + tce, tce)), none)?;
    r.must("edu DMA edu buffer -> TCE 1 (unmapped now)", edu.dma(base + tce, true), none)?;
    let untouched = buf.bytes()[tce as usize..2 * tce as usize].iter().all(|&x| x == 0);
    r.check(format!("after unmap a DMA to {:#x} did not land", base + tce), untouched, "");
    r.must("vfio-core release (unmap, then unregister)", errno(c.release()), none)?;
    if window.is_some() {
        r.must("vfio-core remove_window", errno(c.remove_window(base)), none)?;
    }
    Ok(())
}

/// Two edu functions of one slot behind one PHB: one PE, so one group and
/// one container serve both. Function 0 reads a pattern through a READ TCE,
/// function 1 reads the same TCE and writes the pattern out through a
/// WRITE TCE: one mapping serves every device of the group. After unmap the
/// same write from function 1 does not land.
pub fn two_functions_share_the_pe(b: &mut Bench, r: &mut Rec) -> Result<(), Stop> {
    let functions = b.world().functions.clone();
    if functions.len() < 2 {
        return Err(Stop(format!("the guest has {} edu function(s) in pe0's group, not 2", functions.len())));
    }
    if b.world().name == "kernel" {
        let groups: Vec<Result<u32, String>> = functions.iter().map(|f| group_of(f)).collect();
        r.check("both functions are in one IOMMU group", groups.windows(2).all(|w| w[0] == w[1] && w[0].is_ok()), format!("{functions:?}: {groups:?}"));
    }
    r.must("SET_CONTAINER pe0", b.attach(0), none)?;
    r.must("SET_IOMMU SPAPR_TCE_v2", b.set_iommu(true), none)?;
    let edu0 = r.must("GET_DEVICE_FD function 0", b.device_at(0, &functions[0]).and_then(Edu::open), none)?;
    let edu1 = r.must("GET_DEVICE_FD function 1", b.device_at(0, &functions[1]).and_then(Edu::open), none)?;
    r.step("function 1's id register as the CPU reads it", Ok::<_, i32>(edu1.raw_id), |v| format!("{v:#010x}"));
    r.must("enable bus mastering on function 0", edu0.enable_bus_master(), none)?;
    r.must("enable bus mastering on function 1", edu1.enable_bus_master(), none)?;
    let mut ops = b.ops();
    let mut c = r.must("vfio-core TceContainer::new V2", errno(TceContainer::new(&mut *ops, TceVersion::V2, 0, 12)), none)?;
    let base = 0x10_0000;
    let mut buf = Buffer::new(3 * PAGE as usize, PAGE as usize);
    let data = pattern(0xa5);
    buf.bytes()[..LEN].copy_from_slice(&data);
    r.must("vfio-core register the buffer", errno(c.register(buf.addr, buf.size)), none)?;
    r.must("vfio-core map TCE 0 READ", errno(c.map(base, buf.addr, PAGE, DmaDirection::ToDevice)), none)?;
    r.must("vfio-core map TCE 1 WRITE", errno(c.map(base + PAGE, buf.addr + PAGE, PAGE, DmaDirection::FromDevice)), none)?;
    r.must("function 0: edu DMA TCE 0 -> its buffer", edu0.dma(base, false), none)?;
    r.must("function 1: edu DMA TCE 0 -> its buffer", edu1.dma(base, false), none)?;
    r.must("function 1: edu DMA its buffer -> TCE 1", edu1.dma(base + PAGE, true), none)?;
    let got = buf.bytes()[PAGE as usize..PAGE as usize + LEN].to_vec();
    r.check("function 1 copied the pattern from TCE 0 to TCE 1", got == data, format!("first bytes: wanted {:02x?}, got {:02x?}", &data[..8], &got[..8]));
    buf.bytes()[PAGE as usize..2 * PAGE as usize].fill(0);
    r.must("vfio-core unmap TCE 1", errno(c.unmap(base + PAGE, PAGE)), none)?;
    r.must("function 0: edu DMA its buffer -> TCE 1 (unmapped now)", edu0.dma(base + PAGE, true), none)?;
    let untouched = buf.bytes()[PAGE as usize..2 * PAGE as usize].iter().all(|&x| x == 0);
    r.check("after unmap a DMA from function 0 did not land", untouched, "");
    r.must("vfio-core release (unmap, then unregister)", errno(c.release()), none)?;
    Ok(())
}

/// The group of two functions through raw calls: its status, a device fd
/// for each function before and after SET_IOMMU, the same function twice,
/// and a name that is not in the group.
pub fn two_functions_raw(b: &mut Bench, r: &mut Rec) -> Result<(), Stop> {
    use vfio_core::uapi as k;
    let functions = b.world().functions.clone();
    if functions.len() < 2 {
        return Err(Stop(format!("the guest has {} edu function(s) in pe0's group, not 2", functions.len())));
    }
    let group = b.pe(0).group;
    with_raw_fds(b, |be, fds| {
        let c = r.must("open /dev/vfio/vfio", be.open_container().map_err(|e| e.0), none)?;
        fds.push(c);
        let g = r.must("open group of pe0", be.open_group(group).map_err(|e| e.0), none)?;
        fds.push(g);
        group_status(be, g, r, "GROUP_GET_STATUS (two functions, both bound to vfio-pci)");
        let name = |bdf: &str| std::ffi::CString::new(bdf).expect("a BDF has no NUL");
        r.step("GET_DEVICE_FD function 1 before SET_CONTAINER", be.group_get_device_fd(g, &name(&functions[1])).map_err(|e| e.0), none);
        r.must("GROUP_SET_CONTAINER", be.group_set_container(g, c).map_err(|e| e.0), none)?;
        r.must("SET_IOMMU SPAPR_TCE_v2", be.set_iommu(c, k::VFIO_SPAPR_TCE_V2_IOMMU).map_err(|e| e.0), none)?;
        group_status(be, g, r, "GROUP_GET_STATUS after SET_IOMMU");
        for (label, bdf) in [("function 0", &functions[0]), ("function 1", &functions[1]), ("function 0 again", &functions[0])] {
            if let Some(d) = r.step(format!("GET_DEVICE_FD {label}"), be.group_get_device_fd(g, &name(bdf)).map_err(|e| e.0), none) {
                fds.push(d);
            }
        }
        r.step("GET_DEVICE_FD of a function not in the group (0000:00:02.2)", be.group_get_device_fd(g, &name("0000:00:02.2")).map_err(|e| e.0), none);
        Ok(())
    })
}

fn discovery(phbs: usize, r: &mut Rec) -> Result<(), Stop> {
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
    let seen = seen.join(" ");
    r.check(format!("{phbs} PHB(s) give {phbs} PCI domain(s)"), groups_by_domain.len() == phbs, seen.clone());
    r.check("each PCI domain is one IOMMU group", groups_by_domain.values().all(|g| g.len() == 1), seen.clone());
    r.check("no two domains share a group", all.len() == groups_by_domain.len(), seen);
    let edus = find_edus().map_err(Stop)?;
    r.check(format!("one edu per PHB ({phbs})"), edus.len() == phbs, edus.join(" "));
    Ok(())
}

/// One DMA case: what it goes through, the container type, and the window
/// to create (TCE page shift, size), if not the default one.
type DmaRun = (&'static str, TceVersion, Option<(u32, u64)>);

/// Every DMA case (and, on the kernel, discovery), in order: (name, record, aborted).
pub fn run_all(world: &World) -> Vec<(String, Rec, Option<String>)> {
    let mut out = Vec::new();
    let phbs = world.pes.len();
    if world.name == "kernel" {
        let mut rec = Rec::new();
        let aborted = discovery(phbs, &mut rec).err().map(|s| s.0);
        out.push((format!("{KERNEL_ONLY}{phbs} PHB(s) give one PCI domain and one IOMMU group each"), rec, aborted));
    }
    for pe in 0..phbs {
        let runs: &[DmaRun] = &[
            ("the default 32-bit window", TceVersion::V2, None),
            ("a dynamic 64-bit window of 4 KiB TCEs", TceVersion::V2, Some((12, 1 << 30))),
            ("the default window of a v1 container (pages pinned per map, nothing preregistered)", TceVersion::V1, None),
        ];
        for &(what, version, window) in runs {
            let name = format!(
                "pe{pe}: edu DMA round trips through {what}; DMA to an unmapped IOVA, into a read-only TCE or after unmap does not land"
            );
            let mut rec = Rec::new();
            let aborted = match world.container() {
                Ok(mut bench) => round_trip(&mut bench, pe, version, window, false, &mut rec).err().map(|s| s.0),
                Err(e) => Some(e),
            };
            out.push((name, rec, aborted));
        }
    }
    if world.name == "kernel" {
        // The mock backs memory with base pages only; huge pages are the
        // kernel's to show: 64 KiB TCEs map once the memory behind them is
        // a 2 MiB page (mm_iommu_do_alloc keeps the compound page's shift).
        let mut rec = Rec::new();
        let reserve = std::fs::write("/proc/sys/vm/nr_hugepages", "4").map_err(|e| e.raw_os_error().unwrap_or(libc::EIO));
        let aborted = match (rec.must("reserve 4 huge pages", reserve, none), world.container()) {
            (Err(s), _) => Some(s.0),
            (_, Err(e)) => Some(e),
            (Ok(()), Ok(mut bench)) => {
                round_trip(&mut bench, 0, TceVersion::V2, Some((16, 1 << 30)), true, &mut rec).err().map(|s| s.0)
            }
        };
        out.push((
            format!("{KERNEL_ONLY}pe0: edu DMA round trips through a 64 KiB-TCE window over 2 MiB huge pages; DMA to an unmapped IOVA, into a read-only TCE or after unmap does not land"),
            rec,
            aborted,
        ));
    }
    out
}
