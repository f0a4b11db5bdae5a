//! The hand-over of an iommufd IOAS (Linux 6.13 and later): what QEMU's
//! cpr-transfer does for devices on iommufd since 10.1.
//!
//! Mappings made with IOMMU_IOAS_MAP_FILE hold the memfd's pages by file
//! offset; no process address is in them, so unlike type1 nothing is
//! invalidated and nothing is updated: the IOMMU entries and the pinned
//! pages stay exactly as they are from start to end, and DMA never sees a
//! change. What moves is who is charged for the pinned pages:
//! IOMMU_IOAS_CHANGE_PROCESS, called by the new process, moves the
//! accounting of every mapping of every IOAS of the iommufd to it, all or
//! nothing (drivers/iommu/iommufd/ioas.c iommufd_ioas_change_process), and
//! refuses with EINVAL while any mapping was made from addresses.
//!
//! The flow is type1's (see the module above): the old process sends the
//! description (`iommufd IOAS_ID` in place of `container`) and the
//! descriptors (iommufd, device cdevs, memfd, eventfds), the new one adopts
//! them, calls CHANGE_PROCESS and answers. If the new process fails or dies,
//! the old one calls CHANGE_PROCESS itself: the accounting comes back to it
//! if the new process had moved it (the kernel keeps the dead process's mm
//! referenced, mmgrab in change_mm), and nothing changes if it had not.

use std::os::fd::RawFd;
use std::sync::Arc;

use super::wire::{self, Description, IrqDesc};
use super::{adopt_devices, answer, into_raw, refuse, wire_bad, AdoptedIrqs, GuestMemory, Incoming, Irq, Mapping, Outcome};
use crate::backend::Backend;
use crate::device::Device;
use crate::error::Result;
use crate::iommufd::{Ioas, Iommufd};

/// What the old process hands over.
#[derive(Debug)]
pub struct IommufdHandover<'a> {
    pub iommufd: &'a Iommufd,
    /// The IOAS the devices are attached to (told to the new process).
    pub ioas_id: u32,
    /// The device cdevs, bound to `iommufd`.
    pub devices: &'a [&'a Device],
    pub memory: &'a GuestMemory,
    /// Every mapping: `size` bytes at `iova`, made with `Ioas::map_file`
    /// from `memory`'s memfd at `offset`.
    pub mappings: &'a [Mapping],
    pub irqs: &'a [Irq],
}

/// The checks made before anything is sent: every mapping page aligned,
/// inside the memory, none overlapping; interrupts only of devices handed
/// over; and the kernel's own: IOMMU_IOAS_CHANGE_PROCESS called here, by
/// the process that holds the charge, moves nothing (need_charge_update
/// finds the caller's mm and user) but checks what the new process's call
/// would: ENOTTY before Linux 6.13, EINVAL while any mapping of the iommufd
/// was made from addresses rather than a file, which only the kernel knows.
pub fn prepare_iommufd(h: &IommufdHandover<'_>) -> Result<()> {
    let object = format!("iommufd fd {} IOAS {}", h.iommufd.raw_fd(), h.ioas_id);
    let page = 4096u64;
    let mut sorted = h.mappings.to_vec();
    for m in h.mappings {
        let what = format!("mapping at IOVA {:#x} (offset {:#x}, size {:#x})", m.iova, m.offset, m.size);
        if m.size == 0 || (m.iova | m.offset | m.size) % page != 0 {
            return Err(refuse(&object, libc::EINVAL, format!("{what} is empty or not page aligned")));
        }
        if m.offset.checked_add(m.size).is_none_or(|end| end > h.memory.len() as u64) {
            return Err(refuse(&object, libc::EINVAL, format!("{what} runs past the guest memory's {:#x} bytes", h.memory.len())));
        }
    }
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
    h.iommufd.change_process().map_err(|e| {
        let detail = format!("{}; nothing was sent: the new process could not take the mappings", e.detail.clone().unwrap_or_default());
        e.with_detail(detail)
    })
}

/// The old process's side: checks, sends, waits for the new process. On
/// `failed` or a closed socket it takes the accounting back
/// (CHANGE_PROCESS here) and carries on: [`Outcome::Restored`].
pub fn hand_over_iommufd(socket: RawFd, h: &IommufdHandover<'_>) -> Result<Outcome> {
    prepare_iommufd(h)?;
    let mut fds = vec![h.iommufd.raw_fd()];
    fds.extend(h.devices.iter().map(|d| d.raw_fd()));
    fds.push(h.memory.raw_fd());
    for irq in h.irqs {
        fds.extend(&irq.eventfds);
    }
    let d = Description {
        iommufd: Some(h.ioas_id),
        groups: vec![],
        devices: h.devices.iter().map(|d| d.name().to_string()).collect(),
        memory_len: h.memory.len() as u64,
        irqs: h.irqs.iter().map(|i| IrqDesc { device: i.device.clone(), index: i.index, count: i.eventfds.len() as u32 }).collect(),
        mappings: h.mappings.to_vec(),
    };
    // Nothing was changed before the send, so a failed send needs no undo.
    wire::send(socket, d.to_text().as_bytes(), &fds)?;
    match wire::wait_reply(socket) {
        Ok(()) => Ok(Outcome::HandedOver),
        Err(reason) => take_back(h.iommufd, reason),
    }
}

/// The old process takes the charge back after a failed or dead new one.
/// With RLIMIT_MODE 1 and a new process killed right after its own
/// CHANGE_PROCESS, the charge sits on a dead mm the kernel cannot uncharge
/// (pages.c update_mm_locked_vm: mmget_not_zero fails): the call answers
/// EINVAL (under a WARN_ON in iommufd_ioas_change_process) after charging
/// this process and moving every mapping to it all the same (change_mm
/// runs regardless). Seen on 7.2.13 in the lab. A second call, with nothing
/// left to move, answers 0 exactly when every mapping is this process's:
/// then the hand-over is restored, and the reason says what the kernel did.
pub(super) fn take_back(iommufd: &Iommufd, reason: String) -> Result<Outcome> {
    match iommufd.change_process() {
        Ok(()) => Ok(Outcome::Restored { reason }),
        Err(e) if e.errno == libc::EINVAL && iommufd.change_process().is_ok() => Ok(Outcome::Restored {
            reason: format!(
                "{reason}; taking the charge back answered EINVAL (the new process's mm was gone, RLIMIT_MODE 1) but every mapping is this process's"
            ),
        }),
        Err(e) => Err(e),
    }
}

/// Everything the new process owns once it has adopted an iommufd hand-over.
#[derive(Debug)]
pub struct IommufdTakenOver {
    pub iommufd: Iommufd,
    /// The IOAS the devices are attached to, owned here now (dropping it
    /// asks its destroy, which the kernel refuses while devices use it).
    pub ioas: Ioas,
    /// The device cdevs, still bound and attached as the old process left them.
    pub devices: Vec<Device>,
    pub memory: GuestMemory,
    pub mappings: Vec<Mapping>,
    pub irqs: AdoptedIrqs,
}

impl Incoming {
    /// Makes the objects of an iommufd hand-over on `backend` and maps the
    /// guest memory here (for this process's own access: the IOMMU never
    /// needed its address). Refuses a type1 description.
    pub fn adopt_iommufd(self, backend: Arc<dyn Backend>) -> Result<IommufdTakenOver> {
        let d = self.description;
        let Some(ioas_id) = d.iommufd else {
            return Err(wire_bad("it hands over a type1 container, not an iommufd: adopt it with adopt".into()));
        };
        let mut fds = self.fds.into_iter();
        let mut next = || fds.next().expect("wire::receive checked the count");
        let iommufd = Iommufd::from_raw(backend.clone(), into_raw(next()));
        let ioas = Ioas::adopt(&iommufd, ioas_id);
        let (devices, memory, irqs) = adopt_devices(&backend, &d, &mut next)?;
        Ok(IommufdTakenOver { iommufd, ioas, devices, memory, mappings: d.mappings, irqs })
    }
}

impl IommufdTakenOver {
    /// Moves the pinned-page accounting of every mapping to this process
    /// (IOMMU_IOAS_CHANGE_PROCESS, all or nothing) and tells the old
    /// process: `done`, or `failed` with the reason.
    pub fn complete(&self, socket: RawFd) -> Result<()> {
        answer(socket, self.iommufd.change_process())
    }
}
