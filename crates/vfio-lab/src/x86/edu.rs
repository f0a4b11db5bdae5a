//! End to end through vfio-core's safe types: BAR0 mmap of QEMU's edu
//! device, and DMA by edu's engine through the IOMMU, which proves a mapping
//! exists with the right data and permissions, and is gone after unmap.
//!
//! edu's registers are in crate::edu. Its DMA mask is 28 bits, and QEMU 7.2
//! stops the VM on a 4096-byte transfer into the buffer, so transfers are
//! 4095 bytes.

use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use vfio_core::backend::{Errno, SysResult};
use vfio_core::uapi::*;
use vfio_core::device::{IrqAction, IrqData};
use vfio_core::{Container, Device, Group};

use super::util::{HostBuf, RW};
use crate::case::{Abort, Case, CaseResult, Ctx};
use crate::edu::*;

const LEN: usize = 4095;
const PAGE: u64 = 4096;
const IOVA: u64 = 0x20_0000;

fn sys<T>(r: vfio_core::Result<T>) -> SysResult<T> {
    r.map_err(|e| Errno(e.errno))
}

/// The device playing `role`, its container and group, with type1v2 set.
struct Edu {
    device: Device,
    container: Container,
    _group: Group,
}

fn open_edu(ctx: &mut Ctx, role: &str) -> Result<Edu, Abort> {
    let backend = Arc::clone(&ctx.backend);
    let container = ctx.call("Container::open", sys(Container::open(backend.clone())));
    let container = ctx.need(container, "Container::open")?;
    let group = ctx.call(format!("Group::open {role}"), sys(Group::open(backend, ctx.host.group_of(role))));
    let group = ctx.need(group, "Group::open")?;
    let r = ctx.call("Group::set_container", sys(group.set_container(&container)));
    ctx.need(r, "Group::set_container")?;
    let r = ctx.call("Container::set_iommu TYPE1v2", sys(container.set_iommu(VFIO_TYPE1V2_IOMMU)));
    ctx.need(r, "Container::set_iommu")?;
    let bdf = ctx.host.bdf_of(role).to_string();
    let device = ctx.call(format!("Group::device {role}"), sys(group.device(&bdf)));
    let device = ctx.need(device, "Group::device")?;
    Ok(Edu { device, container, _group: group })
}

fn enable_bus_master(ctx: &mut Ctx, d: &Device) -> CaseResult {
    let cmd = ctx.need(sys(d.read_config::<2>(4)), "read the command register")?;
    let cmd = u16::from_le_bytes(cmd) | 0x4;
    let r = ctx.call("config command |= bus master", sys(d.write_config(4, &cmd.to_le_bytes())));
    ctx.need(r, "enable bus mastering")
}

fn bar0_mmap(ctx: &mut Ctx) -> CaseResult {
    let edu = open_edu(ctx, "solo")?;
    let bar0 = ctx.call_v("Device::region_info BAR0", sys(edu.device.region_info(VFIO_PCI_BAR0_REGION_INDEX)), |r| {
        format!("flags={:#x} size={:#x} mmappable={}", r.flags, r.size, r.mmappable())
    });
    let bar0 = ctx.need(bar0, "BAR0 info")?;
    let map = ctx.call("Device::map_region BAR0 0..4096", sys(edu.device.map_region(&bar0, 0, 4096)));
    let map = ctx.need(map, "mmap BAR0")?;
    let id = ctx.call_v("mmio read 0x00 (id)", sys(map.read_u32(EDU_ID)), |v| format!("{v:#010x}"));
    ctx.check("edu's id register reads 0x010000ed", id == Ok(EDU_ID_VALUE), format!("read {id:?}"));
    for value in [0x1234_5678u32, 0] {
        let _ = ctx.call(format!("mmio write 0x04 (liveness) {value:#x}"), sys(map.write_u32(EDU_LIVENESS, value)));
        let back = ctx.call_v("mmio read 0x04", sys(map.read_u32(EDU_LIVENESS)), |v| format!("{v:#010x}"));
        ctx.check(format!("liveness returns the NOT of {value:#x}"), back == Ok(!value), format!("read {back:?}"));
    }
    // A mapping must fit in the region, and config space cannot be mmapped.
    let _ = ctx.call("Device::map_region BAR0 past its end", sys(edu.device.map_region(&bar0, bar0.size, 4096)).map(|_| ()));
    let config = ctx.need(sys(edu.device.region_info(VFIO_PCI_CONFIG_REGION_INDEX)), "config region info")?;
    let _ = ctx.call("Device::map_region config space", sys(edu.device.map_region(&config, 0, 4096)).map(|_| ()));
    Ok(())
}

/// Starts one edu DMA and waits for the engine to clear its run bit.
fn dma(ctx: &mut Ctx, d: &Device, src: u64, dst: u64, to_ram: bool) -> CaseResult {
    let bar0 = ctx.need(sys(d.region_info(VFIO_PCI_BAR0_REGION_INDEX)), "BAR0 info")?;
    let map = ctx.need(sys(d.map_region(&bar0, 0, 4096)), "mmap BAR0")?;
    let cmd = EDU_DMA_RUN | if to_ram { EDU_DMA_TO_RAM } else { 0 };
    for (reg, v) in [(EDU_DMA_SRC, src), (EDU_DMA_DST, dst), (EDU_DMA_COUNT, LEN as u64), (EDU_DMA_CMD, cmd)] {
        ctx.need(sys(map.write_u64(reg, v)), "program edu's DMA engine")?;
    }
    // edu runs the transfer from a 100 ms timer of the virtual clock.
    let started = Instant::now();
    loop {
        let status = ctx.need(sys(map.read_u64(EDU_DMA_CMD)), "read edu's DMA command")?;
        if status & EDU_DMA_RUN == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(20) {
            return Err(Abort("edu's DMA did not finish within 20 s".into()));
        }
        sleep(Duration::from_millis(5));
    }
    let dir = if to_ram { "device to RAM" } else { "RAM to device" };
    ctx.observe(format!("edu DMA {dir} src={src:#x} dst={dst:#x} count={LEN}"), "finished");
    Ok(())
}

fn pattern(seed: u8) -> Vec<u8> {
    (0..LEN).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn describe(buf: &[u8], want: &[u8]) -> String {
    if buf == want {
        "the pattern".into()
    } else if buf.iter().all(|&b| b == 0) {
        "all zero".into()
    } else {
        let first = buf.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0);
        format!("other data (first difference at byte {first})")
    }
}

fn dma_round_trip(ctx: &mut Ctx) -> CaseResult {
    let edu = open_edu(ctx, "solo")?;
    enable_bus_master(ctx, &edu.device)?;
    let mut buf = HostBuf::new(2 * PAGE as usize);
    let want = pattern(7);
    buf.bytes_mut()[..LEN].copy_from_slice(&want);
    let r = ctx.call("map_dma 2 pages RW", sys(edu.container.map_dma(IOVA, buf.addr(), 2 * PAGE, RW)));
    ctx.need(r, "map the buffer")?;
    dma(ctx, &edu.device, IOVA, EDU_BUFFER, false)?;
    dma(ctx, &edu.device, EDU_BUFFER, IOVA + PAGE, true)?;
    let got = describe(&buf.bytes()[PAGE as usize..PAGE as usize + LEN], &want);
    ctx.observe("second page after the round trip", got.clone());
    ctx.check("the device wrote back exactly what it read", got == "the pattern", got);
    Ok(())
}

fn dma_needs_bus_master(ctx: &mut Ctx) -> CaseResult {
    let edu = open_edu(ctx, "mf-1")?;
    let mut buf = HostBuf::new(PAGE as usize);
    buf.bytes_mut()[..LEN].copy_from_slice(&pattern(5));
    let r = ctx.call("map_dma 1 page RW", sys(edu.container.map_dma(IOVA, buf.addr(), PAGE, RW)));
    ctx.need(r, "map the buffer")?;
    // The device's buffer starts zeroed; bus mastering is off after open.
    buf.bytes_mut().fill(0xaa);
    dma(ctx, &edu.device, EDU_BUFFER, IOVA, true)?;
    let got = if buf.bytes()[..LEN].iter().all(|&b| b == 0xaa) { "untouched" } else { "written" };
    ctx.observe("buffer after a DMA with bus mastering off", got);
    ctx.check("a device without bus mastering writes nothing", got == "untouched", got);
    Ok(())
}

fn dma_after_unmap(ctx: &mut Ctx) -> CaseResult {
    let edu = open_edu(ctx, "mf-0")?;
    enable_bus_master(ctx, &edu.device)?;
    let mut buf = HostBuf::new(PAGE as usize);
    let want = pattern(99);
    buf.bytes_mut()[..LEN].copy_from_slice(&want);
    let r = ctx.call("map_dma 1 page RW", sys(edu.container.map_dma(IOVA, buf.addr(), PAGE, RW)));
    ctx.need(r, "map the buffer")?;
    dma(ctx, &edu.device, IOVA, EDU_BUFFER, false)?; // edu's buffer now holds the pattern
    // Proof the mapping works before it goes: the same write lands.
    buf.bytes_mut().fill(0);
    dma(ctx, &edu.device, EDU_BUFFER, IOVA, true)?;
    let before = describe(&buf.bytes()[..LEN], &want);
    ctx.observe("buffer after a DMA through the mapping", before.clone());
    ctx.check("a DMA through the mapping lands", before == "the pattern", before);

    let _ = ctx.call_v("unmap_dma 1 page", sys(edu.container.unmap_dma(IOVA, PAGE)), |s| format!("size={s:#x}"));
    buf.bytes_mut().fill(0);
    dma(ctx, &edu.device, EDU_BUFFER, IOVA, true)?;
    let after = describe(&buf.bytes()[..LEN], &want);
    ctx.observe("buffer after the same DMA once unmapped", after.clone());
    ctx.check("a DMA to an unmapped IOVA writes nothing", after == "all zero", after);
    Ok(())
}

fn dma_into_read_only(ctx: &mut Ctx) -> CaseResult {
    // READ is the device's permission to read host memory; without WRITE the
    // IOMMU refuses the device's writes.
    let edu = open_edu(ctx, "bridge-a")?;
    enable_bus_master(ctx, &edu.device)?;
    let mut buf = HostBuf::new(2 * PAGE as usize);
    let want = pattern(3);
    buf.bytes_mut()[..LEN].copy_from_slice(&want);
    let r = ctx.call("map_dma page 0 READ", sys(edu.container.map_dma(IOVA, buf.addr(), PAGE, VFIO_DMA_MAP_FLAG_READ)));
    ctx.need(r, "map page 0 read-only")?;
    let r = ctx.call(
        "map_dma page 1 READ",
        sys(edu.container.map_dma(IOVA + PAGE, buf.addr() + PAGE, PAGE, VFIO_DMA_MAP_FLAG_READ)),
    );
    ctx.need(r, "map page 1 read-only")?;
    dma(ctx, &edu.device, IOVA, EDU_BUFFER, false)?;
    dma(ctx, &edu.device, EDU_BUFFER, IOVA + PAGE, true)?;
    let got = describe(&buf.bytes()[PAGE as usize..PAGE as usize + LEN], &want);
    ctx.observe("read-only page after the device wrote to it", got.clone());
    ctx.check("a device write into a read-only mapping does not land", got == "all zero", got);
    Ok(())
}

fn late_group_uses_earlier_mappings(ctx: &mut Ctx) -> CaseResult {
    // A group attached to a container that already has mappings gets them
    // replayed into its domain (vfio_iommu_replay): its device can DMA
    // through a mapping made before it joined.
    let first = open_edu(ctx, "solo")?;
    let mut buf = HostBuf::new(2 * PAGE as usize);
    let want = pattern(42);
    buf.bytes_mut()[..LEN].copy_from_slice(&want);
    let r = ctx.call("map_dma 2 pages RW (one group attached)", sys(first.container.map_dma(IOVA, buf.addr(), 2 * PAGE, RW)));
    ctx.need(r, "map the buffer")?;
    let backend = Arc::clone(&ctx.backend);
    let late = ctx.call("Group::open mf-0", sys(Group::open(backend, ctx.host.group_of("mf-0"))));
    let late = ctx.need(late, "Group::open")?;
    let r = ctx.call("Group::set_container mf-0 (after the map)", sys(late.set_container(&first.container)));
    ctx.need(r, "attach the second group")?;
    let bdf = ctx.host.bdf_of("mf-0").to_string();
    let device = ctx.call("Group::device mf-0", sys(late.device(&bdf)));
    let device = ctx.need(device, "Group::device")?;
    enable_bus_master(ctx, &device)?;
    dma(ctx, &device, IOVA, EDU_BUFFER, false)?;
    dma(ctx, &device, EDU_BUFFER, IOVA + PAGE, true)?;
    let got = describe(&buf.bytes()[PAGE as usize..PAGE as usize + LEN], &want);
    ctx.observe("second page after the late group's round trip", got.clone());
    ctx.check("the late group's device reads and writes through the earlier mapping", got == "the pattern", got);
    drop(device);
    drop(late);
    Ok(())
}

fn dma_through_live_update(ctx: &mut Ctx) -> CaseResult {
    // The IOMMU keeps the pages pinned at map time: a DMA while the host
    // address is invalid lands, and after an update to other memory it
    // still lands in the first pages (vfio_dma_do_map with
    // VFIO_DMA_MAP_FLAG_VADDR records the address and moves the
    // locked-memory accounting; it maps nothing).
    let edu = open_edu(ctx, "solo")?;
    enable_bus_master(ctx, &edu.device)?;
    let mut first = HostBuf::new(2 * PAGE as usize);
    let other = HostBuf::new(2 * PAGE as usize);
    let want = pattern(61);
    first.bytes_mut()[..LEN].copy_from_slice(&want);
    let r = ctx.call("map_dma 2 pages RW", sys(edu.container.map_dma(IOVA, first.addr(), 2 * PAGE, RW)));
    ctx.need(r, "map the buffer")?;
    dma(ctx, &edu.device, IOVA, EDU_BUFFER, false)?;
    let r = ctx.call_v("invalidate_all_vaddrs", sys(edu.container.invalidate_all_vaddrs()), |s| format!("size={s:#x}"));
    ctx.need(r, "invalidate every vaddr")?;
    dma(ctx, &edu.device, EDU_BUFFER, IOVA + PAGE, true)?;
    let got = describe(&first.bytes()[PAGE as usize..PAGE as usize + LEN], &want);
    ctx.observe("second page after a DMA while its vaddr is invalid", got.clone());
    ctx.check("a DMA lands while the mapping's vaddr is invalid", got == "the pattern", got);
    let r = ctx.call("update_vaddr to other memory", sys(edu.container.update_vaddr(IOVA, other.addr(), 2 * PAGE)));
    ctx.need(r, "update the vaddr")?;
    first.bytes_mut()[PAGE as usize..].fill(0);
    dma(ctx, &edu.device, EDU_BUFFER, IOVA + PAGE, true)?;
    let got = describe(&first.bytes()[PAGE as usize..PAGE as usize + LEN], &want);
    let elsewhere = describe(&other.bytes()[PAGE as usize..PAGE as usize + LEN], &want);
    ctx.observe("first memory after a DMA once updated", got.clone());
    ctx.observe("the new address's memory after that DMA", elsewhere.clone());
    ctx.check("after an update the DMA still lands in the pages mapped first", got == "the pattern", got);
    ctx.check("after an update nothing lands at the new address", elsewhere == "all zero", elsewhere);
    Ok(())
}

/// An eventfd, closed on drop.
struct EventFd(i32);

impl EventFd {
    fn new() -> Self {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(fd >= 0, "eventfd failed: {}", std::io::Error::last_os_error());
        Self(fd)
    }

    /// Waits up to `ms` for the counter to become non-zero; returns and clears it.
    fn wait(&self, ms: i32) -> u64 {
        let mut pfd = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, count 1.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            return 0;
        }
        let mut v = 0u64;
        // SAFETY: reads exactly 8 bytes into a u64 on the stack.
        let n = unsafe { libc::read(self.0, (&mut v as *mut u64).cast(), 8) };
        if n == 8 { v } else { 0 }
    }
}

impl Drop for EventFd {
    fn drop(&mut self) {
        // SAFETY: closes the descriptor this value owns.
        unsafe { libc::close(self.0) };
    }
}

/// Raises edu's interrupt by register and reports whether `efd` fired within 2 s.
fn raise_and_wait(ctx: &mut Ctx, d: &Device, efd: &EventFd, label: &str) -> CaseResult {
    let bar0 = ctx.need(sys(d.region_info(VFIO_PCI_BAR0_REGION_INDEX)), "BAR0 info")?;
    let map = ctx.need(sys(d.map_region(&bar0, 0, 4096)), "mmap BAR0")?;
    ctx.need(sys(map.write_u32(EDU_IRQ_RAISE, 0x1)), "raise edu's interrupt")?;
    let fired = efd.wait(2000);
    let status = ctx.need(sys(map.read_u32(EDU_IRQ_STATUS)), "read edu's interrupt status")?;
    ctx.need(sys(map.write_u32(EDU_IRQ_ACK, status)), "acknowledge edu's interrupt")?;
    ctx.observe(format!("{label}: eventfd after edu raised its interrupt"), if fired > 0 { "signalled" } else { "silent" });
    ctx.check(format!("{label} reaches the eventfd"), fired > 0, "no signal within 2 s");
    Ok(())
}

fn msi_to_eventfd(ctx: &mut Ctx) -> CaseResult {
    // vfio_msi_enable + vfio_msi_set_vector_signal: the device's MSI lands on
    // the host's vector, whose handler signals the eventfd.
    let edu = open_edu(ctx, "solo")?;
    let efd = EventFd::new();
    let r = edu.device.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.0]));
    let r = ctx.call("SET_IRQS MSI trigger eventfd", sys(r));
    ctx.need(r, "enable MSI")?;
    // An MSI is a memory write by the device: lost without bus mastering.
    let bar0 = ctx.need(sys(edu.device.region_info(VFIO_PCI_BAR0_REGION_INDEX)), "BAR0 info")?;
    let map = ctx.need(sys(edu.device.map_region(&bar0, 0, 4096)), "mmap BAR0")?;
    ctx.need(sys(map.write_u32(EDU_IRQ_RAISE, 0x1)), "raise edu's interrupt")?;
    let fired = efd.wait(500);
    ctx.need(sys(map.write_u32(EDU_IRQ_ACK, 0x1)), "acknowledge edu's interrupt")?;
    ctx.observe("MSI without bus mastering: eventfd", if fired > 0 { "signalled" } else { "silent" });
    enable_bus_master(ctx, &edu.device)?;
    raise_and_wait(ctx, &edu.device, &efd, "MSI")?;
    let r = edu.device.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::None { count: 0 });
    let _ = ctx.call("SET_IRQS MSI trigger count=0 (disable)", sys(r));
    Ok(())
}

fn intx_to_eventfd(ctx: &mut Ctx) -> CaseResult {
    // INTx is level-triggered and auto-masked: the handler masks the line
    // and signals; vfio_pci_intx_unmask re-arms it once the device is quiet.
    let edu = open_edu(ctx, "mf-0")?;
    let efd = EventFd::new();
    let r = edu.device.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.0]));
    let r = ctx.call("SET_IRQS INTx trigger eventfd", sys(r));
    ctx.need(r, "enable INTx")?;
    raise_and_wait(ctx, &edu.device, &efd, "INTx")?;
    // Auto-masked now: a second interrupt (raised and acknowledged on the
    // device while masked) does not reach the eventfd.
    let bar0 = ctx.need(sys(edu.device.region_info(VFIO_PCI_BAR0_REGION_INDEX)), "BAR0 info")?;
    let map = ctx.need(sys(edu.device.map_region(&bar0, 0, 4096)), "mmap BAR0")?;
    ctx.need(sys(map.write_u32(EDU_IRQ_RAISE, 0x1)), "raise edu's interrupt")?;
    let fired = efd.wait(500);
    ctx.need(sys(map.write_u32(EDU_IRQ_ACK, 0x1)), "acknowledge edu's interrupt")?;
    ctx.observe("INTx while masked: eventfd", if fired > 0 { "signalled" } else { "silent" });
    let r = edu.device.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, 0, IrqAction::Unmask, IrqData::None { count: 1 });
    let _ = ctx.call("SET_IRQS INTx unmask", sys(r));
    raise_and_wait(ctx, &edu.device, &efd, "INTx after unmask")?;
    Ok(())
}

fn set_irqs_rules(ctx: &mut Ctx) -> CaseResult {
    // vfio_set_irqs_validate_and_prepare: the range must fit the index's count.
    let edu = open_edu(ctx, "solo")?;
    let efd = EventFd::new();
    let cases: [(&str, u32, u32, IrqAction, IrqData); 5] = [
        ("MSI vectors 0-1 (edu has one)", VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.0, efd.0])),
        ("MSI-X vector 0 (edu has none)", VFIO_PCI_MSIX_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.0])),
        ("INTx start 1", VFIO_PCI_INTX_IRQ_INDEX, 1, IrqAction::Trigger, IrqData::Eventfds(&[efd.0])),
        ("index 9", 9, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.0])),
        ("MSI mask (MSI cannot be masked)", VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Mask, IrqData::None { count: 1 }),
    ];
    for (label, index, start, action, data) in cases {
        let r = edu.device.set_irqs(index, start, action, data);
        let _ = ctx.call(format!("SET_IRQS {label}"), sys(r));
    }
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "BAR0 mmap reads edu's id and its liveness register answers the NOT of what was written", run: bar0_mmap },
        Case { name: "edu DMA through a mapping reads and writes the right host memory", run: dma_round_trip },
        Case { name: "edu DMA with bus mastering off writes nothing", run: dma_needs_bus_master },
        Case { name: "after unmap the same edu DMA writes nothing", run: dma_after_unmap },
        Case { name: "edu cannot write into a read-only mapping", run: dma_into_read_only },
        Case { name: "a group that joins a container later DMAs through mappings made before it joined", run: late_group_uses_earlier_mappings },
        Case { name: "edu DMA lands in the pages mapped first while their vaddr is invalid and after an update to other memory", run: dma_through_live_update },
        Case { name: "edu's interrupt reaches the eventfd set for its MSI vector", run: msi_to_eventfd },
        Case { name: "edu's INTx reaches its eventfd, masked until unmasked", run: intx_to_eventfd },
        Case { name: "SET_IRQS refuses vectors past an index's count, unknown indexes and masking MSI", run: set_irqs_rules },
    ]
}
