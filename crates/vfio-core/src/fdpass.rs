//! Passing file descriptors over a UNIX socket (SCM_RIGHTS), the way QEMU's
//! monitor receives them for `getfd` and `add-fd` (docs/interop/qmp-spec.rst;
//! chardev/char-socket.c tcp_chr_recv keeps the fds that arrive with any
//! byte of a command, and the command takes them). This is how vfiokit hands
//! QEMU a VFIO device fd it opened (`vfio-pci,fd=NAME`) or an iommufd.
//!
//! Node's `net` cannot send ancillary data, so the QMP client writes the
//! command that takes the fd through [`send_with_fds`] on its socket's fd.

use std::os::fd::RawFd;

/// Most fds one message carries: QEMU's socket chardev accepts up to
/// TCP_MAX_FDS (16) per read.
pub const MAX_FDS: usize = 16;

/// Why a send failed: the errno and a sentence naming the cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdPassError {
    pub errno: i32,
    pub message: String,
}

impl std::fmt::Display for FdPassError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FdPassError {}

fn errno_text(errno: i32) -> String {
    std::io::Error::from_raw_os_error(errno).to_string()
}

/// Sends `data` on the connected UNIX socket `socket`, with `fds` attached
/// to its first byte. Returns the bytes sent: a stream socket may take fewer
/// than `data.len()`, and the caller writes the rest without fds. Never
/// blocks: a full socket buffer is `EAGAIN`, and nothing was sent.
pub fn send_with_fds(socket: RawFd, data: &[u8], fds: &[RawFd]) -> Result<usize, FdPassError> {
    if data.is_empty() {
        return Err(FdPassError { errno: libc::EINVAL, message: "fd passing needs at least one byte of data to carry the fds".into() });
    }
    if fds.is_empty() || fds.len() > MAX_FDS {
        return Err(FdPassError {
            errno: libc::EINVAL,
            message: format!("{} fds in one message: QEMU takes 1 to {MAX_FDS}", fds.len()),
        });
    }
    if let Some(bad) = fds.iter().find(|&&fd| fd < 0) {
        return Err(FdPassError { errno: libc::EBADF, message: format!("fd {bad} is not a file descriptor") });
    }
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 words keep the buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: msg_control points at `space` bytes, enough for one cmsghdr
    // with `fd_bytes` of data (CMSG_SPACE), so CMSG_FIRSTHDR is non-null and
    // CMSG_DATA has room for the fds.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as _;
        std::ptr::copy_nonoverlapping(fds.as_ptr() as *const u8, libc::CMSG_DATA(cmsg), fd_bytes);
    }
    // SAFETY: msg and everything it points to (iov -> data, control) live
    // across the call; MSG_NOSIGNAL turns a closed peer into EPIPE, not SIGPIPE.
    let n = unsafe { libc::sendmsg(socket, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        let cause = match errno {
            libc::ENOTSOCK => "it is not a socket".to_string(),
            libc::EOPNOTSUPP | libc::EINVAL => "fds can be passed only over a UNIX socket, not TCP".to_string(),
            libc::EBADF => "a descriptor is not open".to_string(),
            _ => errno_text(errno),
        };
        return Err(FdPassError { errno, message: format!("sendmsg with {} fd(s) on socket fd {socket} failed: {cause}", fds.len()) });
    }
    Ok(n as usize)
}

/// Receives up to `buf.len()` bytes and the fds sent with them (for tests
/// and for peers written in Rust). Received fds are the caller's to close.
pub fn recv_with_fds(socket: RawFd, buf: &mut [u8]) -> Result<(usize, Vec<RawFd>), FdPassError> {
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space as _;
    // SAFETY: msg points at buf and control, both alive across the call;
    // MSG_CMSG_CLOEXEC so received fds do not leak into children.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
        return Err(FdPassError { errno, message: format!("recvmsg on socket fd {socket} failed: {}", errno_text(errno)) });
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of
    // cmsghdrs; CMSG_FIRSTHDR/NXTHDR walk only within them.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                for i in 0..count {
                    fds.push(std::ptr::read_unaligned(data.add(i)));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, fds))
}

// Reached only from JavaScript: a test build of the napi feature sees no caller.
#[cfg(feature = "napi")]
#[cfg_attr(test, allow(dead_code))]
#[path = "fdpass_napi.rs"]
mod napi_binding;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    fn pair(kind: libc::c_int) -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: fds has room for the two descriptors socketpair writes.
        assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }, 0);
        // SAFETY: socketpair just opened both; each is owned once.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    fn inode(fd: RawFd) -> (u64, u64) {
        // SAFETY: st is written by fstat before it is read.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::fstat(fd, &mut st) }, 0);
        (st.st_dev, st.st_ino)
    }

    #[test]
    fn an_fd_sent_with_a_message_arrives_as_the_same_open_file() {
        let (a, b) = pair(libc::SOCK_STREAM);
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let sent = send_with_fds(a.as_raw_fd(), b"{\"execute\": \"getfd\"}\r\n", &[file.as_raw_fd()]).unwrap();
        assert_eq!(sent, 22);
        let mut buf = [0u8; 64];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(&buf[..n], b"{\"execute\": \"getfd\"}\r\n");
        assert_eq!(fds.len(), 1);
        assert_ne!(fds[0], file.as_raw_fd());
        assert_eq!(inode(fds[0]), inode(file.as_raw_fd()));
        // SAFETY: recv_with_fds handed the fd to this test.
        drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    }

    #[test]
    fn a_closed_fd_is_refused_with_ebadf_and_nothing_is_sent() {
        let (a, b) = pair(libc::SOCK_STREAM);
        let closed = {
            let f = std::fs::File::open("/proc/self/exe").unwrap();
            f.as_raw_fd()
        };
        let err = send_with_fds(a.as_raw_fd(), b"x", &[closed]).unwrap_err();
        assert_eq!(err.errno, libc::EBADF);
        // SAFETY: the flag is a plain int argument.
        assert_eq!(unsafe { libc::fcntl(b.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) }, 0);
        let mut buf = [0u8; 4];
        assert_eq!(recv_with_fds(b.as_raw_fd(), &mut buf).unwrap_err().errno, libc::EAGAIN);
    }

    #[test]
    fn no_fds_or_more_than_qemu_takes_is_einval() {
        let (a, _b) = pair(libc::SOCK_STREAM);
        assert_eq!(send_with_fds(a.as_raw_fd(), b"x", &[]).unwrap_err().errno, libc::EINVAL);
        assert_eq!(send_with_fds(a.as_raw_fd(), b"x", &[0; MAX_FDS + 1]).unwrap_err().errno, libc::EINVAL);
        assert_eq!(send_with_fds(a.as_raw_fd(), b"", &[0]).unwrap_err().errno, libc::EINVAL);
    }

    #[test]
    fn a_full_socket_is_eagain_not_a_blocked_thread() {
        let (a, _b) = pair(libc::SOCK_STREAM);
        let chunk = vec![0u8; 1 << 16];
        let file = std::fs::File::open("/proc/self/exe").unwrap();
        let mut last = Ok(0);
        for _ in 0..1000 {
            last = send_with_fds(a.as_raw_fd(), &chunk, &[file.as_raw_fd()]);
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last.unwrap_err().errno, libc::EAGAIN);
    }
}
