import test from 'ava';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { moduleKey, readModinfo, resolveModules } from './modules';

/** A minimal ELF64 LE object with a .modinfo section holding `info`. */
function fakeModule(info: string[]): Buffer {
  const modinfo = Buffer.from(info.map((s) => `${s}\0`).join(''), 'latin1');
  const shstrtab = Buffer.from('\0.modinfo\0.shstrtab\0', 'latin1');
  const ehdr = Buffer.alloc(64);
  ehdr.writeUInt32BE(0x7f454c46, 0);
  ehdr[4] = 2; // ELFCLASS64
  ehdr[5] = 1; // little-endian
  const dataAt = 64;
  const strAt = dataAt + modinfo.length;
  const shAt = strAt + shstrtab.length;
  ehdr.writeBigUInt64LE(BigInt(shAt), 0x28);
  ehdr.writeUInt16LE(64, 0x3a);
  ehdr.writeUInt16LE(3, 0x3c);
  ehdr.writeUInt16LE(2, 0x3e);
  const sh = (name: number, offset: number, size: number): Buffer => {
    const b = Buffer.alloc(64);
    b.writeUInt32LE(name, 0);
    b.writeBigUInt64LE(BigInt(offset), 0x18);
    b.writeBigUInt64LE(BigInt(size), 0x20);
    return b;
  };
  return Buffer.concat([ehdr, modinfo, shstrtab, sh(0, 0, 0), sh(1, dataAt, modinfo.length), sh(10, strAt, shstrtab.length)]);
}

test('modinfo fields are read from the .modinfo section', (t) => {
  const info = readModinfo(fakeModule(['license=GPL', 'depends=vfio,irqbypass', 'name=vfio_pci_core']));
  t.deepEqual(info.get('depends'), ['vfio,irqbypass']);
  t.deepEqual(info.get('name'), ['vfio_pci_core']);
});

test('dashes and underscores name the same module', (t) => {
  t.is(moduleKey('vfio-pci-core'), 'vfio_pci_core');
});

test('modules come after their dependencies, built-in ones are left out, and a missing one is named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vfiokit-mods-'));
  try {
    mkdirSync(join(dir, 'kernel/drivers/vfio/pci'), { recursive: true });
    writeFileSync(join(dir, 'kernel/drivers/vfio/vfio.ko'), fakeModule(['depends=irqbypass']));
    writeFileSync(join(dir, 'kernel/drivers/vfio/irqbypass.ko'), fakeModule(['depends=']));
    writeFileSync(join(dir, 'kernel/drivers/vfio/pci/vfio-pci.ko'), fakeModule(['depends=vfio,vfio_virqfd']));
    writeFileSync(join(dir, 'kernel/drivers/vfio/pci/orphan.ko'), fakeModule(['depends=gone']));
    writeFileSync(join(dir, 'modules.builtin'), 'kernel/drivers/vfio/vfio_virqfd.ko\n');
    t.deepEqual(
      resolveModules(dir, ['vfio_pci']).map((m) => [m.name, m.path]),
      [
        ['irqbypass', 'kernel/drivers/vfio/irqbypass.ko'],
        ['vfio', 'kernel/drivers/vfio/vfio.ko'],
        ['vfio_pci', 'kernel/drivers/vfio/pci/vfio-pci.ko'],
      ],
    );
    t.throws(() => resolveModules(dir, ['orphan']), { message: /gone \(needed by orphan\)/ });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
