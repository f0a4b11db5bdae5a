// The one error class of vfio-core. The addon throws every failure as an
// instance of it (index.js registers it with the binding at load; see
// src/binding/error.rs), so callers check it with `instanceof` and read its
// properties as thrown, with no layer above rebuilding it.
'use strict';

class VfioError extends Error {
  /** The addon sets `code`, `errno`, `ioctl`, `object` and, where known, `entryIndex`, `detail` and `hint` after construction. */
  constructor(message) {
    super(message);
  }
}
Object.defineProperty(VfioError.prototype, 'name', { value: 'VfioError', writable: true, configurable: true });

module.exports = { VfioError };
