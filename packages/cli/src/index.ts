// @vfiokit/cli exports its exit codes, for scripts and tools that wrap the binary.
export { ExitCode, EXIT_CODE_DESCRIPTIONS } from './exit-codes';
export { runCli } from './cli';
