/*
 * A guest that keeps QEMU's edu doing DMA, for the lab's `vfiokit upgrade`
 * case (upgrade.lab.ts): the guest must run, and the device it was given
 * by VFIO must keep doing DMA, before, during and after its QEMU is
 * replaced. A Linux guest under nested TCG takes minutes to boot; this
 * program needs only SeaBIOS and QEMU's multiboot loader (`-kernel`, which
 * enters it in 32-bit protected mode, flat segments, paging off; Multiboot
 * specification 0.6.96, section 3.2).
 *
 * It finds edu (1234:11e8) by PCI config cycles (0xcf8/0xcfc), reads the
 * BAR0 SeaBIOS gave it, enables memory decoding and bus mastering, then in
 * a loop: fills SRC with a pattern new each round, zeroes DST, has edu copy
 * SRC into its own buffer and back out to DST (two DMAs through the IOMMU
 * QEMU programmed, each started by writing edu's registers: 0x80 source,
 * 0x88 destination, 0x90 count, 0x98 command, bit 0 start, bit 1 from edu
 * to RAM; QEMU hw/misc/edu.c), and counts the rounds whose DST equals SRC
 * (ok) and the others (bad). While it waits for edu it counts a 64-bit
 * heartbeat, so its progress shows even when a DMA stalls.
 *
 * What it counts lives in guest RAM at STAT, which the lab case reads
 * through QEMU's memfd (memory-backend-memfd):
 *   +0  'VFKG' once edu is set up (0x474b4656), 0 before
 *   +4  the config address of edu (0x80000000 | bus << 16 | dev << 11), or
 *       0xffffffff when the guest has no edu
 *   +8  heartbeat, 64-bit
 *   +16 rounds, +20 ok, +24 bad (32-bit)
 *   +28 BAR0
 *
 * Built in the lab guest with the host's binutils:
 *   as --32 -o g.o dma-guest.S && ld -m elf_i386 -Ttext 0x100000 -o g.elf g.o
 */
	.set STAT, 0x200000
	.set SRC, 0x300000
	.set DST, 0x301000
	/* Below 4096: QEMU 7.2's edu (the lab's outer QEMU) refuses a 4096-byte DMA into its buffer. */
	.set LEN, 2048
	.set EDU_BUF, 0x40000
	.set MAGIC, 0x474b4656

	.code32
	.text
	.globl _start
	.align 4
multiboot_header:
	.long 0x1BADB002		/* magic */
	.long 0				/* flags: an ELF image, nothing asked of the loader */
	.long -0x1BADB002		/* checksum: the three sum to 0 */

_start:
	cli
	mov $0x90000, %esp
	mov $STAT, %edi
	xor %eax, %eax
	mov $8, %ecx
	rep stosl

	/* Every bus, device and function until the vendor/device word reads 1234:11e8. */
	mov $0x80000000, %ebx
find:
	mov %ebx, %eax
	call config_read
	cmp $0x11e81234, %eax
	je found
	add $0x100, %ebx
	cmp $0x81000000, %ebx
	jb find
	movl $0xffffffff, STAT+4
halt:
	hlt
	jmp halt

found:
	mov %ebx, STAT+4
	lea 0x10(%ebx), %eax
	call config_read
	and $0xfffffff0, %eax
	mov %eax, %ebp			/* BAR0, kept in %ebp */
	mov %eax, STAT+28
	/* Command register: memory decoding (bit 1) and bus mastering (bit 2). */
	lea 0x4(%ebx), %eax
	mov $0xcf8, %dx
	out %eax, %dx
	mov $0xcfc, %dx
	in %dx, %ax
	or $0x6, %ax
	out %ax, %dx
	movl $MAGIC, STAT

round:
	/* A pattern of its own each round, so a stale DST never passes. */
	mov STAT+16, %eax
	inc %eax
	imul $0x9e3779b1, %eax, %eax
	mov $SRC, %edi
	mov $(LEN / 4), %ecx
fill:
	mov %eax, (%edi)
	add $4, %edi
	add $0x01000193, %eax
	loop fill
	mov $DST, %edi
	xor %eax, %eax
	mov $(LEN / 4), %ecx
	rep stosl

	mov $SRC, %eax
	mov $EDU_BUF, %edx
	mov $0x1, %ecx			/* start, RAM to edu */
	call dma
	mov $EDU_BUF, %eax
	mov $DST, %edx
	mov $0x3, %ecx			/* start, edu to RAM */
	call dma

	mov $SRC, %esi
	mov $DST, %edi
	mov $(LEN / 4), %ecx
	repe cmpsl
	jne 1f
	incl STAT+20
	jmp 2f
1:	incl STAT+24
2:	incl STAT+16
	jmp round

/* %eax: config address; returns the dword there in %eax. */
config_read:
	mov $0xcf8, %dx
	out %eax, %dx
	mov $0xcfc, %dx
	in %dx, %eax
	ret

/* One edu DMA of LEN bytes from %eax to %edx, command %ecx; waits until edu clears the start bit. */
dma:
	mov %eax, 0x80(%ebp)
	mov %edx, 0x88(%ebp)
	movl $LEN, 0x90(%ebp)
	mov %ecx, 0x98(%ebp)
wait:
	mov $2000, %ecx
beat:
	addl $1, STAT+8
	adcl $0, STAT+12
	loop beat
	testl $0x1, 0x98(%ebp)
	jnz wait
	ret
