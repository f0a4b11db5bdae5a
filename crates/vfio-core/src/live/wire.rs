//! The hand-over's bytes on the socket. Text, one item per line, so a
//! person reading a capture (or `strace -e recvmsg`) can tell what moved:
//!
//! ```text
//! vfiokit-live-update 1
//! container
//! group 12
//! device 0000:00:03.0
//! memory 0x40000000
//! irq 0000:00:03.0 1 1
//! map 0x100000 0x200000 0x0
//! end
//! ```
//!
//! An iommufd IOAS is handed over with `iommufd IOAS_ID` in place of
//! `container` and no `group` lines (its devices are VFIO cdevs).
//!
//! Each of `container` (or `iommufd`), `group`, `device`, `memory` takes one descriptor,
//! each `irq DEVICE INDEX COUNT` takes COUNT, in line order; `map IOVA SIZE
//! OFFSET` lines take none. The descriptors follow the text, at most
//! [`MAX_FDS`] on each one-byte `.` message (SCM_RIGHTS). The new process
//! answers `done` or `failed REASON`, one line.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::Mapping;
use crate::error::{Error, Result};
use crate::fdpass::{recv_with_fds, send_with_fds, MAX_FDS};

pub const MAGIC: &str = "vfiokit-live-update 1";
/// A description longer than this is not one (65535 mappings take ~3 MiB).
const MAX_TEXT: usize = 8 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IrqDesc {
    pub device: String,
    pub index: u32,
    pub count: u32,
}

/// What the text says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// Some(IOAS id): an iommufd and its IOAS, not a type1 container.
    pub iommufd: Option<u32>,
    pub groups: Vec<u32>,
    pub devices: Vec<String>,
    pub memory_len: u64,
    pub irqs: Vec<IrqDesc>,
    pub mappings: Vec<Mapping>,
}

fn bad(detail: impl Into<String>) -> Error {
    Error::new(libc::EPROTO, "live update", "hand-over description").with_detail(detail)
}

fn num(s: &str, line: usize) -> Result<u64> {
    let v = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|_| bad(format!("line {line}: '{s}' is not a number")))
}

impl Description {
    /// Descriptors the text asks for.
    pub fn fd_count(&self) -> usize {
        2 + self.groups.len() + self.devices.len() + self.irqs.iter().map(|i| i.count as usize).sum::<usize>()
    }

    pub fn to_text(&self) -> String {
        let mut s = match self.iommufd {
            None => format!("{MAGIC}\ncontainer\n"),
            Some(ioas) => format!("{MAGIC}\niommufd {ioas}\n"),
        };
        for g in &self.groups {
            s.push_str(&format!("group {g}\n"));
        }
        for d in &self.devices {
            s.push_str(&format!("device {d}\n"));
        }
        s.push_str(&format!("memory {:#x}\n", self.memory_len));
        for i in &self.irqs {
            s.push_str(&format!("irq {} {} {}\n", i.device, i.index, i.count));
        }
        for m in &self.mappings {
            s.push_str(&format!("map {:#x} {:#x} {:#x}\n", m.iova, m.size, m.offset));
        }
        s.push_str("end\n");
        s
    }

    /// Parses a whole description (through its `end` line), strictly: the
    /// order is the one `to_text` writes, every field is checked.
    pub fn parse(text: &str) -> Result<Self> {
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l));
        match lines.next() {
            Some((_, l)) if l == MAGIC => {}
            Some((_, l)) => return Err(bad(format!("it starts '{l}', not '{MAGIC}': the peer speaks another version or is not vfiokit"))),
            None => return Err(bad("it is empty")),
        }
        let iommufd = match lines.next().map(|(_, l)| l) {
            Some("container") => None,
            Some(l) if l.starts_with("iommufd ") => Some(
                u32::try_from(num(&l["iommufd ".len()..], 2)?).map_err(|_| bad("line 2: IOAS id too large"))?,
            ),
            _ => return Err(bad("line 2 must be 'container' or 'iommufd IOAS_ID'")),
        };
        let mut d = Description { iommufd, groups: vec![], devices: vec![], memory_len: 0, irqs: vec![], mappings: vec![] };
        let mut memory = false;
        for (n, line) in lines {
            let f: Vec<&str> = line.split(' ').collect();
            match (f[0], f.len()) {
                ("group", 2) if iommufd.is_none() && d.devices.is_empty() && !memory => d.groups.push(u32::try_from(num(f[1], n)?).map_err(|_| bad(format!("line {n}: group id too large")))?),
                ("device", 2) if !memory => d.devices.push(f[1].to_string()),
                ("memory", 2) if !memory => {
                    d.memory_len = num(f[1], n)?;
                    memory = true;
                }
                ("irq", 4) if memory && d.mappings.is_empty() => {
                    if !d.devices.iter().any(|x| x == f[1]) {
                        return Err(bad(format!("line {n}: interrupts of {}, which is not handed over", f[1])));
                    }
                    let count = num(f[3], n)?;
                    if count == 0 || count > 2048 {
                        return Err(bad(format!("line {n}: {count} eventfds")));
                    }
                    d.irqs.push(IrqDesc { device: f[1].to_string(), index: num(f[2], n)? as u32, count: count as u32 });
                }
                ("map", 4) if memory => {
                    let m = Mapping { iova: num(f[1], n)?, size: num(f[2], n)?, offset: num(f[3], n)? };
                    if m.offset.checked_add(m.size).is_none_or(|end| end > d.memory_len) {
                        return Err(bad(format!("line {n}: the mapping runs past the guest memory's {:#x} bytes", d.memory_len)));
                    }
                    d.mappings.push(m);
                }
                ("end", 1) if memory => {
                    if d.iommufd.is_none() && d.groups.is_empty() {
                        return Err(bad("no group: a type1 container has at least one"));
                    }
                    return Ok(d);
                }
                _ => return Err(bad(format!("line {n}: '{line}' is not expected here"))),
            }
        }
        Err(bad("it has no 'end' line"))
    }
}

fn poll(socket: RawFd, events: i16) -> Result<()> {
    let mut p = libc::pollfd { fd: socket, events, revents: 0 };
    loop {
        // SAFETY: one valid pollfd, count 1, no timeout.
        let n = unsafe { libc::poll(&mut p, 1, -1) };
        if n >= 0 {
            return Ok(());
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        if errno != libc::EINTR {
            return Err(Error::new(errno, "poll", format!("hand-over socket fd {socket}")));
        }
    }
}

fn sock_err(e: crate::fdpass::FdPassError, socket: RawFd) -> Error {
    Error::new(e.errno, "sendmsg", format!("hand-over socket fd {socket}")).with_detail(e.message)
}

/// Writes all of `data` (no descriptors), waiting while the socket is full.
pub fn send_all(socket: RawFd, mut data: &[u8]) -> Result<()> {
    while !data.is_empty() {
        // SAFETY: data is a live slice; MSG_NOSIGNAL turns a closed peer into EPIPE.
        let n = unsafe { libc::send(socket, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        match errno {
            libc::EAGAIN => poll(socket, libc::POLLOUT)?,
            libc::EINTR => {}
            _ => return Err(Error::new(errno, "send", format!("hand-over socket fd {socket}"))),
        }
    }
    Ok(())
}

/// Sends the text, then the descriptors, [`MAX_FDS`] per one-byte message.
pub fn send(socket: RawFd, text: &[u8], fds: &[RawFd]) -> Result<()> {
    send_all(socket, text)?;
    for chunk in fds.chunks(MAX_FDS) {
        loop {
            match send_with_fds(socket, b".", chunk) {
                Ok(_) => break,
                Err(e) if e.errno == libc::EAGAIN => poll(socket, libc::POLLOUT)?,
                Err(e) => return Err(sock_err(e, socket)),
            }
        }
    }
    Ok(())
}

/// Reads one hand-over: the text through `end`, then exactly the
/// descriptors it names. Everything received is closed again on error.
pub fn receive(socket: RawFd) -> Result<(Description, Vec<OwnedFd>)> {
    let mut data: Vec<u8> = Vec::new();
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut want: Option<(Description, usize, usize)> = None; // (description, bytes, fds)
    let mut buf = vec![0u8; 1 << 16];
    loop {
        if let Some((_, bytes, nfds)) = &want {
            if data.len() >= *bytes && fds.len() >= *nfds {
                break;
            }
        }
        let (n, got) = match recv_with_fds(socket, &mut buf) {
            Ok(r) => r,
            Err(e) if e.errno == libc::EAGAIN => {
                poll(socket, libc::POLLIN)?;
                continue;
            }
            Err(e) if e.errno == libc::EINTR => continue,
            Err(e) => return Err(Error::new(e.errno, "recvmsg", format!("hand-over socket fd {socket}")).with_detail(e.message)),
        };
        // SAFETY: recv_with_fds hands every received descriptor to the caller, once.
        fds.extend(got.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
        if n == 0 {
            return Err(bad(format!(
                "the old process closed the socket after {} bytes and {} descriptors, before the hand-over was complete",
                data.len(),
                fds.len()
            )));
        }
        data.extend_from_slice(&buf[..n]);
        if want.is_none() {
            if let Some(end) = find_end(&data) {
                let text = std::str::from_utf8(&data[..end]).map_err(|_| bad("it is not UTF-8"))?;
                let d = Description::parse(text)?;
                let nfds = d.fd_count();
                want = Some((d, end + nfds.div_ceil(MAX_FDS), nfds));
            } else if data.len() > MAX_TEXT {
                return Err(bad(format!("no 'end' line in the first {MAX_TEXT} bytes")));
            }
        }
    }
    let (d, bytes, nfds) = want.expect("the loop ends only with a description");
    if data.len() != bytes || fds.len() != nfds || data[data.len() - nfds.div_ceil(MAX_FDS)..].iter().any(|&b| b != b'.') {
        return Err(bad(format!(
            "the description names {nfds} descriptors but {} arrived with {} bytes after it",
            fds.len(),
            data.len().saturating_sub(bytes - nfds.div_ceil(MAX_FDS))
        )));
    }
    Ok((d, fds))
}

fn find_end(data: &[u8]) -> Option<usize> {
    if data.starts_with(b"end\n") {
        return Some(4);
    }
    data.windows(5).position(|w| w == b"\nend\n").map(|p| p + 5)
}

const PEER_CLOSED: &str = "the new process closed the socket before it answered (it died or gave up)";

/// Waits for the new process's one-line answer. `Err` carries why the
/// hand-over did not happen: its `failed` reason, or that it closed the
/// socket (died) first.
pub fn wait_reply(socket: RawFd) -> std::result::Result<(), String> {
    let mut line = Vec::new();
    let mut b = [0u8; 256];
    loop {
        // SAFETY: b is a live buffer of b.len() bytes.
        let n = unsafe { libc::recv(socket, b.as_mut_ptr().cast(), b.len(), 0) };
        if n < 0 {
            let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
            match errno {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    poll(socket, libc::POLLIN).map_err(|e| e.to_string())?;
                    continue;
                }
                // A UNIX stream socket closed with data still unread in
                // its queue (the description the dead process never read)
                // resets its peer (net/unix/af_unix.c unix_release_sock:
                // ECONNRESET) instead of ending the stream: it died all the
                // same.
                libc::ECONNRESET => return Err(PEER_CLOSED.into()),
                _ => return Err(format!("reading the new process's answer failed: {}", std::io::Error::from_raw_os_error(errno))),
            }
        }
        if n == 0 {
            return Err(PEER_CLOSED.into());
        }
        line.extend_from_slice(&b[..n as usize]);
        if let Some(p) = line.iter().position(|&c| c == b'\n') {
            let text = String::from_utf8_lossy(&line[..p]).into_owned();
            return match text.as_str() {
                "done" => Ok(()),
                t if t.starts_with("failed ") => Err(format!("the new process failed: {}", &t[7..])),
                t => Err(format!("the new process answered '{t}', not 'done'")),
            };
        }
    }
}
