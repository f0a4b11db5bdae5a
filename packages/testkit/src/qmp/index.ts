// The fake QEMU monitor for unit tests, and a real QEMU for integration tests.
export {
  FakeQmpCommandError,
  FakeQmpPeer,
  NO_REPLY,
  QEMU_2_11_GREETING,
  QEMU_7_2_GREETING,
} from './fake-peer';
export type { FakeQmpCall, FakeQmpGreeting, FakeQmpHandler, FakeQmpPeerOptions } from './fake-peer';
export { qemuAvailable, startTestQemu, testNeedingQemu } from './qemu-process';
export type { RegisterTest, TestQemu, TestQemuOptions } from './qemu-process';
export { QEMU_MATRIX, qemuBuild, qemuCacheDir } from './qemu-versions';
export type { QemuBuild } from './qemu-versions';
export { GUEST_READY_MARK, startTestGuest, testKernel } from './test-guest';
export type { TestGuest, TestGuestOptions } from './test-guest';
