// The target triples @vfiokit/vfio-core publishes a binary for, and what the
// release check needs to know about each: napi-rs's platform name (the npm
// package `@vfiokit/vfio-core-<platform>` and the file
// `vfio-core.<platform>.node`), Node's `process.arch`, Debian's architecture
// and cross linker, the qemu-user binary that runs it, and what `readelf -h`
// must say about a binary built for it.

export interface Target {
  readonly triple: string;
  /** napi-rs's name: linux-x64-gnu. */
  readonly platform: string;
  /** Node's process.arch on it. */
  readonly nodeArch: string;
  /** Debian's architecture name (dpkg --print-architecture). */
  readonly debianArch: string;
  /** qemu-user's program for it; undefined for the machine the check runs on. */
  readonly qemu?: string;
  /** Debian's cross gcc, the linker .cargo/config.toml names; undefined when native. */
  readonly crossGcc?: string;
  /** The Debian packages that give crossGcc and the target's glibc to link against. */
  readonly crossPackages: readonly string[];
  /** readelf -h: Class, Data (byte order), Machine. */
  readonly elf: { readonly class: string; readonly data: string; readonly machine: string };
}

export const TARGETS: readonly Target[] = [
  {
    triple: 'x86_64-unknown-linux-gnu',
    platform: 'linux-x64-gnu',
    nodeArch: 'x64',
    debianArch: 'amd64',
    crossPackages: [],
    elf: { class: 'ELF64', data: "2's complement, little endian", machine: 'Advanced Micro Devices X86-64' },
  },
  {
    triple: 'aarch64-unknown-linux-gnu',
    platform: 'linux-arm64-gnu',
    nodeArch: 'arm64',
    debianArch: 'arm64',
    qemu: 'qemu-aarch64',
    crossGcc: 'aarch64-linux-gnu-gcc',
    crossPackages: ['gcc-aarch64-linux-gnu', 'libc6-dev-arm64-cross'],
    elf: { class: 'ELF64', data: "2's complement, little endian", machine: 'AArch64' },
  },
  {
    // Little-endian POWER (POWER8 and later, ELFv2 ABI): the sPAPR hosts.
    triple: 'powerpc64le-unknown-linux-gnu',
    platform: 'linux-ppc64-gnu',
    nodeArch: 'ppc64',
    debianArch: 'ppc64el',
    qemu: 'qemu-ppc64le',
    crossGcc: 'powerpc64le-linux-gnu-gcc',
    crossPackages: ['gcc-powerpc64le-linux-gnu', 'libc6-dev-ppc64el-cross'],
    elf: { class: 'ELF64', data: "2's complement, little endian", machine: 'PowerPC64' },
  },
];

