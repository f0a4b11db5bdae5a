//! How a conformance case records what it sees. A case talks to a
//! [`Backend`] directly, one call per kernel entry point with the raw uapi
//! arguments (invalid ones included), and records each call's result and
//! returned values as a [`Step`]; the same case run on the mock and on the
//! kernel must record the same steps. Descriptors a case opens are closed,
//! when the case ends however it ends.

use std::ffi::CString;
use std::sync::Arc;

use vfio_core::backend::{Backend, Errno, RawFd, SysResult};
use vfio_core::error::errno_name;

use crate::host::LabHost;
use crate::report::{Check, Line, Step};

/// A case stopped early: a call it needed did not succeed.
#[derive(Debug)]
pub struct Abort(pub String);

pub type CaseResult = Result<(), Abort>;

pub struct Case {
    pub name: &'static str,
    pub run: fn(&mut Ctx) -> CaseResult,
}

pub struct Ctx<'a> {
    pub backend: Arc<dyn Backend>,
    pub host: &'a LabHost,
    steps: Vec<Step>,
    checks: Vec<Check>,
    fds: Vec<RawFd>,
}

fn result_text<T>(r: &SysResult<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(Errno(e)) => errno_name(*e).into(),
    }
}

impl<'a> Ctx<'a> {
    pub fn new(backend: Arc<dyn Backend>, host: &'a LabHost) -> Self {
        Self { backend, host, steps: Vec::new(), checks: Vec::new(), fds: Vec::new() }
    }

    /// Records a call's result (not its value: descriptors differ between
    /// backends and mean nothing to compare).
    pub fn call<T>(&mut self, call: impl Into<String>, r: SysResult<T>) -> SysResult<T> {
        self.steps.push(Step { call: call.into(), result: result_text(&r), value: String::new() });
        r
    }

    /// Records a call's result and, on success, the value `show` renders.
    pub fn call_v<T>(&mut self, call: impl Into<String>, r: SysResult<T>, show: impl FnOnce(&T) -> String) -> SysResult<T> {
        let value = r.as_ref().map(show).unwrap_or_default();
        self.steps.push(Step { call: call.into(), result: result_text(&r), value });
        r
    }

    /// Records an observation that is not a call (a value read back from memory).
    pub fn observe(&mut self, what: impl Into<String>, value: impl Into<String>) {
        self.steps.push(Step { call: what.into(), result: "ok".into(), value: value.into() });
    }

    /// A fact that must hold on this backend by itself.
    pub fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check { what: what.into(), ok, detail: if ok { String::new() } else { detail.into() } });
    }

    /// Turns a failed call the case cannot go on without into an [`Abort`].
    pub fn need<T>(&self, r: SysResult<T>, what: &str) -> Result<T, Abort> {
        r.map_err(|Errno(e)| Abort(format!("{what} failed with {}", errno_name(e))))
    }

    // Descriptor helpers: each records its step and keeps the fd for cleanup.

    pub fn open_container(&mut self) -> SysResult<RawFd> {
        let r = self.backend.open_container();
        let r = self.call("open /dev/vfio/vfio", r);
        if let Ok(fd) = r {
            self.fds.push(fd);
        }
        r
    }

    /// Opens the group of the device playing `role`.
    pub fn open_group(&mut self, role: &str) -> SysResult<RawFd> {
        let group = self.host.group_of(role);
        let r = self.backend.open_group(group);
        let r = self.call(format!("open group of {role}"), r);
        if let Ok(fd) = r {
            self.fds.push(fd);
        }
        r
    }

    pub fn open_group_id(&mut self, label: &str, group: u32) -> SysResult<RawFd> {
        let r = self.backend.open_group(group);
        let r = self.call(format!("open {label}"), r);
        if let Ok(fd) = r {
            self.fds.push(fd);
        }
        r
    }

    /// `VFIO_GROUP_GET_DEVICE_FD` for the device playing `role`.
    pub fn device_fd(&mut self, group: RawFd, role: &str) -> SysResult<RawFd> {
        let name = CString::new(self.host.bdf_of(role)).expect("a BDF has no NUL");
        let r = self.backend.group_get_device_fd(group, &name);
        let r = self.call(format!("GROUP_GET_DEVICE_FD {role}"), r);
        if let Ok(fd) = r {
            self.fds.push(fd);
        }
        r
    }

    /// Keeps a descriptor the case opened itself (iommufd, a device cdev)
    /// for closing when the case ends.
    pub fn adopt(&mut self, fd: RawFd) {
        self.fds.push(fd);
    }

    /// Closes `fd` now (before the case ends), e.g. to test what closing releases.
    pub fn close(&mut self, fd: RawFd) {
        if let Some(i) = self.fds.iter().position(|&f| f == fd) {
            self.fds.remove(i);
            self.backend.close(fd);
        }
    }

    /// Ends the case: releases everything it holds, newest first, and
    /// returns its results line.
    pub fn finish(mut self, name: &str, outcome: CaseResult) -> Line {
        for fd in self.fds.drain(..).rev() {
            self.backend.close(fd);
        }
        Line::Case {
            name: name.into(),
            steps: std::mem::take(&mut self.steps),
            checks: std::mem::take(&mut self.checks),
            aborted: outcome.err().map(|Abort(why)| why),
        }
    }
}
