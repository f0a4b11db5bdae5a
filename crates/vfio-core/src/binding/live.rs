//! Live update from Node: `GuestMemory`, `Type1Container.handOver` (the
//! old process) and `VfioBackend.takeOver` (the new one). Both wait on the
//! other process, so they run on libuv's pool and return promises.

use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::{Env, Task};
use napi_derive::napi;

use super::container::{Shared, Type1Container};
use super::args::hand_over_mappings;
use super::device::Device;
use super::error::{bad_arg, js_err};
use super::iommufd::{with_open, IommufdSpace, OpenSpace};
use crate::live;

/// Guest RAM in a memfd, mapped shared: the only memory a live hand-over
/// can pass to another process. Map DMA from `address`.
#[napi]
pub struct GuestMemory {
    pub(super) inner: Arc<live::GuestMemory>,
}

#[napi]
impl GuestMemory {
    /// A new memfd of `size` bytes (rounded up to the page size), zero-filled.
    #[napi(constructor)]
    pub fn new(env: &Env, size: f64) -> Result<Self> {
        if !(size >= 1.0 && size <= (1u64 << 52) as f64) || size.fract() != 0.0 {
            return Err(js_err(env, bad_arg(format!("guest memory size {size} is not a whole number of bytes"))));
        }
        let m = live::GuestMemory::create("vfiokit-guest-ram", size as usize).map_err(|e| js_err(env, e))?;
        Ok(Self { inner: Arc::new(m) })
    }

    /// This process's address of the first byte.
    #[napi(getter)]
    pub fn address(&self) -> BigInt {
        BigInt::from(self.inner.addr())
    }

    #[napi(getter)]
    pub fn size(&self) -> f64 {
        self.inner.len() as f64
    }

    /// The memfd (owned by this object; closed when it is collected).
    #[napi(getter)]
    pub fn fd(&self) -> i32 {
        self.inner.raw_fd()
    }

    #[napi]
    pub fn read(&self, env: &Env, offset: f64, length: u32) -> Result<Buffer> {
        let mut out = vec![0u8; length as usize];
        self.inner.read(offset as usize, &mut out).map_err(|e| js_err(env, e))?;
        Ok(out.into())
    }

    #[napi]
    pub fn write(&self, env: &Env, offset: f64, data: &[u8]) -> Result<()> {
        self.inner.write(offset as usize, data).map_err(|e| js_err(env, e))
    }
}

#[napi(object, js_name = "LiveIrq")]
pub struct LiveIrqJs {
    /// The device's PCI address.
    pub device: String,
    pub index: u32,
    /// Eventfds in vector order.
    pub eventfds: Vec<i32>,
}

#[napi(object, js_name = "HandOverOutcome")]
pub struct HandOverOutcomeJs {
    /// True: the new process owns everything; close this container and exit.
    pub handed_over: bool,
    /// Why not, when the old process restored its addresses and carries on.
    pub reason: Option<String>,
}

pub struct HandOverTask {
    shared: Arc<Shared>,
    socket: i32,
    memory: Arc<live::GuestMemory>,
    mappings: Vec<[u64; 3]>,
    irqs: Vec<live::Irq>,
}

impl Task for HandOverTask {
    type Output = crate::Result<live::Outcome>;
    type JsValue = HandOverOutcomeJs;

    fn compute(&mut self) -> Result<Self::Output> {
        let object = self.shared.object.clone();
        Ok(self.shared.with(live_call(), &object, |o| {
            let devices: Vec<&crate::Device> = o.devices.values().collect();
            let h = live::Handover { container: &o.t1, devices: &devices, memory: &self.memory, mappings: &self.mappings, irqs: &self.irqs };
            live::hand_over(self.socket, &h)
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        outcome_js(&env, output)
    }
}

fn outcome_js(env: &Env, output: crate::Result<live::Outcome>) -> Result<HandOverOutcomeJs> {
    match output {
        Ok(live::Outcome::HandedOver) => Ok(HandOverOutcomeJs { handed_over: true, reason: None }),
        Ok(live::Outcome::Restored { reason }) => Ok(HandOverOutcomeJs { handed_over: false, reason: Some(reason) }),
        Err(e) => Err(js_err(env, e)),
    }
}

fn irqs_of(irqs: Option<Vec<LiveIrqJs>>) -> Vec<live::Irq> {
    irqs.unwrap_or_default().into_iter().map(|i| live::Irq { device: i.device, index: i.index, eventfds: i.eventfds }).collect()
}

/// A take-over's interrupts as the new process holds them: the eventfds
/// leave Rust's ownership, the caller owns (and closes) them.
type OwnedIrqs = Vec<(String, u32, Vec<i32>)>;

fn owned_irqs(irqs: live::AdoptedIrqs) -> OwnedIrqs {
    irqs.into_iter().map(|(d, i, fds)| (d, i, fds.into_iter().map(std::os::fd::IntoRawFd::into_raw_fd).collect())).collect()
}

fn irqs_js(irqs: &OwnedIrqs) -> Vec<LiveIrqJs> {
    irqs.iter().map(|(d, i, f)| LiveIrqJs { device: d.clone(), index: *i, eventfds: f.clone() }).collect()
}

fn live_call() -> &'static str {
    "live update"
}

impl Type1Container {
    pub(super) fn hand_over_task(
        &self,
        socket: i32,
        memory: &GuestMemory,
        mappings: &[u64],
        irqs: Option<Vec<LiveIrqJs>>,
    ) -> std::result::Result<HandOverTask, crate::Error> {
        let mappings = hand_over_mappings(mappings, "iova, vaddr, size")?;
        Ok(HandOverTask {
            shared: self.shared.clone(),
            socket,
            memory: memory.inner.clone(),
            mappings: mappings.to_vec(),
            irqs: irqs_of(irqs),
        })
    }
}

#[napi]
impl Type1Container {
    /// The old process's side of a live update: every mapping (`mappings`:
    /// iova, vaddr, size triples, each exactly as mapped, all inside
    /// `memory`), this container's groups, every device opened from it,
    /// `memory` and `irqs`' eventfds go to the process at the other end of
    /// the UNIX socket `socketFd`, without stopping DMA. Resolves once the
    /// new process answers; rejects (changing nothing) when it cannot work.
    #[napi(ts_return_type = "Promise<HandOverOutcome>")]
    pub fn hand_over(
        &self,
        env: &Env,
        socket_fd: i32,
        memory: &GuestMemory,
        mappings: BigUint64ArraySlice,
        irqs: Option<Vec<LiveIrqJs>>,
    ) -> Result<AsyncTask<HandOverTask>> {
        let task = self.hand_over_task(socket_fd, memory, &mappings, irqs).map_err(|e| js_err(env, e))?;
        Ok(AsyncTask::new(task))
    }

}

/// What a new process holds after `VfioBackend.takeOver`.
#[napi]
pub struct TakenOver {
    container: Type1Container,
    /// One handle per device: its last handle collected closes the fd.
    devices: Vec<Device>,
    memory: Arc<live::GuestMemory>,
    irqs: OwnedIrqs,
}

#[napi]
impl TakenOver {
    /// The container and its groups.
    #[napi(getter)]
    pub fn container(&self) -> Type1Container {
        self.container.handle()
    }

    /// The handed-over devices, opened from the container.
    #[napi(getter)]
    pub fn devices(&self) -> Vec<Device> {
        self.devices.iter().map(Device::handle).collect()
    }

    /// The guest memory, mapped in this process.
    #[napi(getter)]
    pub fn memory(&self) -> GuestMemory {
        GuestMemory { inner: self.memory.clone() }
    }

    /// The interrupts' eventfds; the caller owns (and closes) them.
    #[napi(getter)]
    pub fn irqs(&self) -> Vec<LiveIrqJs> {
        irqs_js(&self.irqs)
    }
}

pub struct TakeOverTask {
    backend: Arc<dyn crate::backend::Backend>,
    socket: i32,
}

impl Task for TakeOverTask {
    type Output = crate::Result<live::TakenOver>;
    type JsValue = TakenOver;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(live::receive(self.socket).and_then(|i| i.adopt(self.backend.clone())).and_then(|t| t.complete(self.socket).map(|_| t)))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        let t = output.map_err(|e| js_err(&env, e))?;
        let irqs = owned_irqs(t.irqs);
        let container = Type1Container::new(t.container);
        let devices = container.adopt_devices(t.devices);
        Ok(TakenOver { container, devices, memory: Arc::new(t.memory), irqs })
    }
}

pub(super) fn take_over_task(backend: Arc<dyn crate::backend::Backend>, socket: i32) -> TakeOverTask {
    TakeOverTask { backend, socket }
}

// ---- the iommufd hand-over (Linux 6.13: IOMMU_IOAS_MAP_FILE mappings move
// with IOMMU_IOAS_CHANGE_PROCESS; vfio-core's live::iommufd) ----

/// `IommufdSpace.handOver` on libuv's pool: it waits for the new process.
pub struct IommufdHandOverTask {
    open: OpenSpace,
    object: String,
    socket: i32,
    memory: Arc<live::GuestMemory>,
    mappings: Vec<live::Mapping>,
    irqs: Vec<live::Irq>,
}

impl IommufdHandOverTask {
    pub(super) fn new(open: OpenSpace, object: String, socket: i32, memory: &GuestMemory, mappings: Vec<live::Mapping>, irqs: Option<Vec<LiveIrqJs>>) -> Self {
        Self { open, object, socket, memory: memory.inner.clone(), mappings, irqs: irqs_of(irqs) }
    }
}

impl Task for IommufdHandOverTask {
    type Output = crate::Result<live::Outcome>;
    type JsValue = HandOverOutcomeJs;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(with_open(&self.open, &self.object, |s| {
            let devices: Vec<&crate::Device> = s.devices().iter().map(crate::CdevDevice::device).collect();
            let h = live::IommufdHandover {
                iommufd: s.iommufd(),
                ioas_id: s.ioas().id(),
                devices: &devices,
                memory: &self.memory,
                mappings: &self.mappings,
                irqs: &self.irqs,
            };
            live::hand_over_iommufd(self.socket, &h)
        }))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        outcome_js(&env, output)
    }
}

/// What a new process holds after `VfioBackend.takeOverIommufd`: the
/// pinned pages are charged to it, the old process may exit.
#[napi]
pub struct IommufdTakenOver {
    space: IommufdSpace,
    memory: Arc<live::GuestMemory>,
    mappings: Vec<live::Mapping>,
    irqs: OwnedIrqs,
}

#[napi]
impl IommufdTakenOver {
    /// The iommufd, its IOAS and the device cdevs, bound and attached as the
    /// old process left them (`hwpts` is empty and `hwInfo` refuses: the
    /// devices' iommufd ids stayed with the old process). Every handle is
    /// the same space: `close()` on one closes it.
    #[napi(getter)]
    pub fn space(&self) -> IommufdSpace {
        self.space.handle()
    }

    /// The guest memory, mapped in this process.
    #[napi(getter)]
    pub fn memory(&self) -> GuestMemory {
        GuestMemory { inner: self.memory.clone() }
    }

    /// The mappings as the old process described them: iova, offset, size
    /// triples (the order `handOver` takes them in).
    #[napi(getter)]
    pub fn mappings(&self) -> BigUint64Array {
        self.mappings.iter().flat_map(|m| [m.iova, m.offset, m.size]).collect::<Vec<u64>>().into()
    }

    /// The interrupts' eventfds; the caller owns (and closes) them.
    #[napi(getter)]
    pub fn irqs(&self) -> Vec<LiveIrqJs> {
        irqs_js(&self.irqs)
    }
}

type Adopted = (crate::IommufdSpace, live::GuestMemory, Vec<live::Mapping>, live::AdoptedIrqs);

pub struct TakeOverIommufdTask {
    backend: Arc<dyn crate::backend::Backend>,
    socket: i32,
}

impl Task for TakeOverIommufdTask {
    type Output = crate::Result<Adopted>;
    type JsValue = IommufdTakenOver;

    fn compute(&mut self) -> Result<Self::Output> {
        Ok(take_over_iommufd(self.backend.clone(), self.socket))
    }

    fn resolve(&mut self, env: Env, output: Self::Output) -> Result<Self::JsValue> {
        let (space, memory, mappings, irqs) = output.map_err(|e| js_err(&env, e))?;
        Ok(IommufdTakenOver { space: IommufdSpace::new(space), memory: Arc::new(memory), mappings, irqs: owned_irqs(irqs) })
    }
}

/// Receives, adopts, checks every device is a cdev (before the charge
/// moves: a space this process cannot hold must not take it), then moves
/// the charge and answers the old process. On any error everything received
/// is closed again (dropped).
fn take_over_iommufd(backend: Arc<dyn crate::backend::Backend>, socket: i32) -> crate::Result<Adopted> {
    let adopted = live::receive(socket)?.adopt_iommufd(backend).and_then(|t| {
        t.devices.iter().try_for_each(|d| crate::iommufd::cdev_index(d.name()).map(drop))?;
        Ok(t)
    });
    // The old process waits for an answer, and the socket stays open as
    // long as the JS side holds it: say why rather than leave it waiting.
    let t = match adopted {
        Ok(t) => t,
        Err(e) => {
            // The error to report is this one, whether or not the answer went out.
            let _ = live::answer(socket, Err(e.clone()));
            return Err(e);
        }
    };
    t.complete(socket)?;
    let live::IommufdTakenOver { iommufd, ioas, devices, memory, mappings, irqs } = t;
    let space = crate::IommufdSpace::adopt(iommufd, ioas, devices)?;
    Ok((space, memory, mappings, irqs))
}

pub(super) fn take_over_iommufd_task(backend: Arc<dyn crate::backend::Backend>, socket: i32) -> TakeOverIommufdTask {
    TakeOverIommufdTask { backend, socket }
}
