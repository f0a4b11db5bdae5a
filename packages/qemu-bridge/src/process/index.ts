// Child processes that end with vfiokit: spawnTied (the parent-death signal),
// createRunDir (a temporary folder with a reaper), launchQemu (both, for QEMU),
// and cpr-transfer of a running guest to a new QEMU.
export { spawnTied, resolveProgram, TiedSpawnError, type TiedSpawnOptions, type TiedStdio } from './tied';
export { createRunDir, type RunDir } from './run-dir';
export { launchQemu, type LaunchOptions, type RunningQemu } from './launch';
export {
  CPR_TRANSFER_WITH_VFIO,
  cprIncomingArgs,
  cprTargetArgv,
  cprTransfer,
  cprTransferRefusal,
  resolvedMachineType,
  waitForSocket,
  type CprChannels,
  type CprOutcome,
} from './cpr';
export * from './version';
