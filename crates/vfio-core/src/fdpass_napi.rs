//! The Node face of [`super`]: `sendWithFds(socketFd, data, fds)`. Its
//! errors carry `code` (the errno's name, e.g. `EAGAIN`) and `errno`.

use napi::bindgen_prelude::*;
use napi_derive::napi;

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EAGAIN => "EAGAIN",
        libc::EBADF => "EBADF",
        libc::EINVAL => "EINVAL",
        libc::ENOTSOCK => "ENOTSOCK",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EPIPE => "EPIPE",
        libc::ECONNRESET => "ECONNRESET",
        libc::ENOTCONN => "ENOTCONN",
        _ => "EIO",
    }
}

/// Sends `data` on the UNIX socket `socketFd` with `fds` attached (SCM_RIGHTS);
/// returns the bytes sent. Throws with `code` EAGAIN when the socket is full.
#[napi(js_name = "sendWithFds")]
pub fn send_with_fds(socket_fd: i32, data: Buffer, fds: Vec<i32>) -> std::result::Result<u32, napi::Error<String>> {
    super::send_with_fds(socket_fd, &data, &fds).map(|n| n as u32).map_err(|e| {
        napi::Error::new(errno_name(e.errno).to_string(), format!("{} (errno {})", e.message, e.errno))
    })
}
