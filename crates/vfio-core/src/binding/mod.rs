//! The Node face of vfio-core. All napi types live here and nowhere else.
//!
//! - Errors are JS `Error`s with stable properties: `code` (`EEXIST`, ...),
//!   `errno`, `ioctl`, `object`, and `entryIndex` for batches.
//! - Batches cross as typed arrays: a `BigUint64Array` of iova/vaddr/size
//!   triples (iova/size pairs to unmap) and a `Uint32Array` of flags (or one
//!   number for all), borrowed without copying.
//! - A mock host is described by a plain, JSON-able object
//!   ([`MockHostConfig`]); 64-bit quantities there are numbers or strings
//!   ("0x7fffffffff"), since JSON has no bigint.

mod args;
mod container;
mod device;
mod error;
mod host;
mod live;
mod iommufd;
mod memory;
mod mock_host;
mod spapr;
