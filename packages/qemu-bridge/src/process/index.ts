// Child processes that end with vfiokit: spawnTied (the parent-death signal),
// createRunDir (a temporary folder with a reaper), launchQemu (both, for QEMU).
export { spawnTied, resolveProgram, TiedSpawnError, type TiedSpawnOptions, type TiedStdio } from './tied';
export { createRunDir, type RunDir } from './run-dir';
export { launchQemu, type LaunchOptions, type RunningQemu } from './launch';
export * from './version';
