//! Live update: a running type1 container, its groups, devices, guest
//! memory and interrupt eventfds handed to a new process while the devices
//! keep doing DMA (what QEMU's cpr-transfer does for VFIO devices).
//!
//! The kernel side (drivers/vfio/vfio_iommu_type1.c, VFIO_UPDATE_VADDR):
//! `VFIO_DMA_UNMAP_FLAG_VADDR` marks mappings' host addresses invalid and
//! leaves the IOMMU mappings and the pinned pages alone;
//! `VFIO_DMA_MAP_FLAG_VADDR` gives an invalidated mapping of exactly the same
//! extent its new address and moves the locked-memory accounting to the
//! caller's mm (vfio_change_dma_owner). Nothing is ever unmapped, so there is
//! no window where a device's DMA faults. While an address is invalid the
//! container takes no new group (EBUSY), and a container with an mdev
//! (emulated IOMMU group) does not offer the extension at all.
//!
//! The flow, over a connected UNIX socket:
//!
//! 1. old: [`hand_over`] checks everything it can up front ([`prepare`]),
//!    invalidates every mapping in one call, sends a [`Description`] and the
//!    descriptors (SCM_RIGHTS), and waits for the answer;
//! 2. new: [`receive`], [`Incoming::adopt`] (objects from the descriptors,
//!    the memfd mapped here), [`TakenOver::complete`]: every mapping updated
//!    to this process's addresses, all or nothing, then `done` or `failed`;
//! 3. old: on `done` it owns nothing any more and may exit; on `failed`, or
//!    when the socket closes first (the new process died), it gives every
//!    mapping its own address back ([`restore`]) and carries on.
//!
//! If the old process dies after sending, the descriptors in flight or
//! already received keep every object open: the new process owns them.

mod iommufd;
mod memory;
mod wire;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

pub use iommufd::{hand_over_iommufd, prepare_iommufd, IommufdHandover, IommufdTakenOver};
pub use memory::GuestMemory;
pub use wire::{Description, IrqDesc, MAGIC};

use crate::backend::Backend;
use crate::container::Container;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::group::Group;
use crate::type1::Type1Container;
use crate::uapi;

/// One mapping as the hand-over describes it: `size` bytes at `iova`, backed
/// by the guest memory from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub iova: u64,
    pub size: u64,
    pub offset: u64,
}

/// The eventfds an enabled interrupt index of a device signals, in vector order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Irq {
    pub device: String,
    pub index: u32,
    pub eventfds: Vec<RawFd>,
}

/// What the old process hands over.
#[derive(Debug)]
pub struct Handover<'a> {
    pub container: &'a Type1Container,
    pub devices: &'a [&'a Device],
    pub memory: &'a GuestMemory,
    /// Every mapping of the container as `[iova, vaddr, size]`, exactly as
    /// it was mapped (one entry per VFIO_IOMMU_MAP_DMA): the kernel lists
    /// none, and an update takes only the extent a map made.
    pub mappings: &'a [[u64; 3]],
    pub irqs: &'a [Irq],
}

/// How a hand-over ended for the old process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new process updated every mapping: the old one may close its
    /// descriptors and exit; the devices keep their mappings.
    HandedOver,
    /// The new process failed or died; every mapping has the old process's
    /// address again and it carries on as before.
    Restored { reason: String },
}

const CALL: &str = "live update";

fn refuse(object: impl Into<String>, errno: i32, detail: impl Into<String>) -> Error {
    Error::new(errno, CALL, object).with_detail(detail)
}

/// The checks a hand-over makes before it changes anything: the container
/// offers VFIO_UPDATE_VADDR, every mapping lies in the shared guest memory
/// and is page aligned, no two overlap. Returns the mappings as offsets.
pub fn prepare(h: &Handover<'_>) -> Result<Vec<Mapping>> {
    let object = h.container.object();
    // vfio_iommu_type1_check_extension: VFIO_UPDATE_VADDR is offered only
    // with an IOMMU set and no emulated (mdev) group; kernels before 5.12
    // do not know it.
    if !h.container.check_extension(uapi::VFIO_UPDATE_VADDR)? {
        return Err(refuse(
            object,
            libc::EOPNOTSUPP,
            "the container does not offer VFIO_UPDATE_VADDR: the kernel predates Linux 5.12, or an mdev device \
             (emulated IOMMU group) is in the container, whose pinning needs valid addresses at all times; \
             stop the devices' DMA and map again in the new process instead",
        ));
    }
    let page = 4096u64;
    let mut out = Vec::with_capacity(h.mappings.len());
    for &[iova, vaddr, size] in h.mappings {
        let what = format!("mapping at IOVA {iova:#x} (vaddr {vaddr:#x}, size {size:#x})");
        if size == 0 || (iova | vaddr | size) % page != 0 {
            return Err(refuse(&object, libc::EINVAL, format!("{what} is empty or not page aligned")));
        }
        let Some(offset) = h.memory.offset_of(vaddr, size) else {
            return Err(refuse(
                &object,
                libc::EINVAL,
                format!(
                    "{what} is not inside the shared guest memory ({:#x} bytes at {:#x}): anonymous or private memory \
                     cannot be handed over; back guest RAM with a memfd (GuestMemory) and map from it",
                    h.memory.len(),
                    h.memory.addr()
                ),
            ));
        };
        out.push(Mapping { iova, size, offset });
    }
    let mut sorted = out.clone();
    sorted.sort_by_key(|m| m.iova);
    for w in sorted.windows(2) {
        if w[0].iova + w[0].size > w[1].iova {
            return Err(refuse(&object, libc::EINVAL, format!("mappings at IOVA {:#x} and {:#x} overlap", w[0].iova, w[1].iova)));
        }
    }
    for irq in h.irqs {
        if !h.devices.iter().any(|d| d.name() == irq.device) {
            return Err(refuse(&object, libc::EINVAL, format!("interrupt eventfds of {} but that device is not handed over", irq.device)));
        }
    }
    Ok(out)
}

/// Gives every mapping the address of `memory` again: after a failed or
/// abandoned hand-over, in the process that keeps the container. A mapping
/// the new process had already updated is valid with the new process's
/// address (vfio_dma_do_map then answers EINVAL): it is invalidated and
/// updated again, so every mapping ends up with this process's address.
pub fn restore(container: &Container, memory: &GuestMemory, mappings: &[Mapping]) -> Result<()> {
    for m in mappings {
        let vaddr = memory.addr() + m.offset;
        match container.update_vaddr(m.iova, vaddr, m.size) {
            Ok(()) => {}
            Err(e) if e.errno == libc::EINVAL => {
                container.invalidate_vaddr(m.iova, m.size)?;
                container.update_vaddr(m.iova, vaddr, m.size)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives every mapping its address in `memory`, all or nothing: if one
/// fails, the ones updated before it are invalidated again, so the old
/// process can restore every mapping.
pub fn update_all(container: &Container, memory: &GuestMemory, mappings: &[Mapping]) -> Result<()> {
    for (i, m) in mappings.iter().enumerate() {
        if let Err(e) = container.update_vaddr(m.iova, memory.addr() + m.offset, m.size) {
            let mut undo = Vec::new();
            for done in &mappings[..i] {
                if let Err(u) = container.invalidate_vaddr(done.iova, done.size) {
                    undo.push(format!("IOVA {:#x}: {}", done.iova, u.code()));
                }
            }
            let gave_back = if undo.is_empty() {
                format!("the {i} updated before it were invalidated again")
            } else {
                format!("invalidating the ones before it again failed at {}", undo.join(", "))
            };
            let detail = format!("{}; mapping {} of {} (IOVA {:#x}); {gave_back}", e.detail.clone().unwrap_or_default(), i + 1, mappings.len(), m.iova);
            return Err(e.with_entry(i).with_detail(detail));
        }
    }
    Ok(())
}

/// The old process's side: checks, invalidates every mapping in one call,
/// sends the description and descriptors on `socket`, and waits for the new
/// process. Errors before the send leave every mapping as it was.
pub fn hand_over(socket: RawFd, h: &Handover<'_>) -> Result<Outcome> {
    let mappings = prepare(h)?;
    let described: u64 = mappings.iter().map(|m| m.size).sum();
    let invalidated = h.container.invalidate_all_vaddrs()?;
    if invalidated != described {
        restore(h.container, h.memory, &mappings)?;
        return Err(refuse(
            h.container.object(),
            libc::EINVAL,
            format!(
                "the container holds {invalidated:#x} bytes of mappings but the description covers {described:#x}: \
                 describe every mapping as it was mapped; the described ones have their addresses back, \
                 any other needs VFIO_DMA_MAP_FLAG_VADDR from its owner"
            ),
        ));
    }
    let (description, fds) = describe(h, &mappings);
    if let Err(e) = wire::send(socket, description.to_text().as_bytes(), &fds) {
        restore(h.container, h.memory, &mappings)?;
        return Err(e);
    }
    match wire::wait_reply(socket) {
        Ok(()) => Ok(Outcome::HandedOver),
        Err(reason) => {
            restore(h.container, h.memory, &mappings)?;
            Ok(Outcome::Restored { reason })
        }
    }
}

fn describe(h: &Handover<'_>, mappings: &[Mapping]) -> (Description, Vec<RawFd>) {
    let mut fds = vec![h.container.raw_fd()];
    fds.extend(h.container.groups().iter().map(Group::raw_fd));
    fds.extend(h.devices.iter().map(|d| d.raw_fd()));
    fds.push(h.memory.raw_fd());
    for irq in h.irqs {
        fds.extend(&irq.eventfds);
    }
    let d = Description {
        iommufd: None,
        groups: h.container.group_ids(),
        devices: h.devices.iter().map(|d| d.name().to_string()).collect(),
        memory_len: h.memory.len() as u64,
        irqs: h.irqs.iter().map(|i| IrqDesc { device: i.device.clone(), index: i.index, count: i.eventfds.len() as u32 }).collect(),
        mappings: mappings.to_vec(),
    };
    (d, fds)
}

/// What the new process received: the description and the descriptors in
/// its order (container, groups, devices, memfd, eventfds), each closed on
/// drop unless adopted.
#[derive(Debug)]
pub struct Incoming {
    pub description: Description,
    pub fds: Vec<OwnedFd>,
}

/// The new process's side, first step: reads one hand-over from `socket`.
pub fn receive(socket: RawFd) -> Result<Incoming> {
    let (description, fds) = wire::receive(socket)?;
    Ok(Incoming { description, fds })
}

/// Everything the new process owns once it has adopted a hand-over.
#[derive(Debug)]
pub struct TakenOver {
    pub container: Type1Container,
    pub devices: Vec<Device>,
    pub memory: GuestMemory,
    pub mappings: Vec<Mapping>,
    pub irqs: AdoptedIrqs,
}

impl Incoming {
    /// Makes the objects from the received descriptors on `backend` and maps
    /// the guest memory here. Nothing is updated yet.
    pub fn adopt(self, backend: Arc<dyn Backend>) -> Result<TakenOver> {
        if let Some(ioas) = self.description.iommufd {
            return Err(wire_bad(format!("it hands over an iommufd (IOAS {ioas}), not a type1 container: adopt it with adopt_iommufd")));
        }
        let d = self.description;
        let mut fds = self.fds.into_iter();
        let mut next = || fds.next().expect("wire::receive checked the count");
        let container = Container::from_raw(backend.clone(), into_raw(next()));
        let groups: Vec<Group> = d.groups.iter().map(|&id| Group::from_raw(backend.clone(), id, into_raw(next()))).collect();
        let container = Type1Container::from_parts(container, groups);
        let (devices, memory, irqs) = adopt_devices(&backend, &d, &mut next)?;
        Ok(TakenOver { container, devices, memory, mappings: d.mappings, irqs })
    }
}

/// (device, irq index, eventfds in vector order).
pub type AdoptedIrqs = Vec<(String, u32, Vec<OwnedFd>)>;

/// The descriptors both kinds of hand-over send after their IOMMU's, in
/// wire order: the devices, the guest memory, the enabled interrupts'
/// eventfds. `next` yields the received descriptors in that order.
fn adopt_devices(backend: &Arc<dyn Backend>, d: &Description, next: &mut impl FnMut() -> OwnedFd) -> Result<(Vec<Device>, GuestMemory, AdoptedIrqs)> {
    let devices = d.devices.iter().map(|n| Device::from_raw(backend.clone(), into_raw(next()), n.clone())).collect();
    let memory = GuestMemory::from_fd(next(), d.memory_len as usize)?;
    let irqs = d.irqs.iter().map(|i| (i.device.clone(), i.index, (0..i.count).map(|_| next()).collect())).collect();
    Ok((devices, memory, irqs))
}

fn wire_bad(detail: String) -> Error {
    Error::new(libc::EPROTO, CALL, "hand-over description").with_detail(detail)
}

fn into_raw(fd: OwnedFd) -> RawFd {
    std::os::fd::IntoRawFd::into_raw_fd(fd)
}

impl TakenOver {
    /// Updates every mapping to this process's addresses (all or nothing)
    /// and tells the old process: `done`, or `failed` with the reason.
    pub fn complete(&self, socket: RawFd) -> Result<()> {
        answer(socket, update_all(&self.container, &self.memory, &self.mappings))
    }
}

/// Tells the old process how the new one's part ended (`done`, or `failed`
/// with the reason) and returns that ending.
pub fn answer(socket: RawFd, r: Result<()>) -> Result<()> {
    let text = match &r {
        Ok(()) => "done\n".to_string(),
        Err(e) => format!("failed {}\n", e.to_string().replace('\n', " ")),
    };
    let sent = wire::send_all(socket, text.as_bytes());
    r?;
    match sent {
        // The old process is gone: nobody else holds the objects now.
        Err(e) if e.errno == libc::EPIPE || e.errno == libc::ECONNRESET => Ok(()),
        other => other,
    }
}

impl AsRawFd for GuestMemory {
    fn as_raw_fd(&self) -> RawFd {
        self.raw_fd()
    }
}

#[cfg(test)]
mod tests;
