/*
 * The kernel's side of `pnpm lab bench`: the minimal VFIO type1 ioctls a VMM
 * issues, in C, with nothing in between, so vfiokit's JavaScript path can be
 * measured against them in the same guest run. Built static by the lab
 * (testkit/src/lab/bench/index.ts) and run in the x86 guest as
 *
 *   vfio-bench GROUP ENTRIES RAM_MIB PIN_MAX_MIB ROUNDS
 *
 * It prints one JSON object on stdout; times are nanoseconds of
 * CLOCK_MONOTONIC, the best of ROUNDS (a TCG guest on a shared host is noisy;
 * the fastest round is the least disturbed).
 *
 *   a_map_scattered   ENTRIES 4 KiB pages, a gap after each: one
 *                     VFIO_IOMMU_MAP_DMA each (nothing to coalesce).
 *   b_per_section     RAM_MIB of guest RAM laid out as a q35 guest's low RAM
 *                     (0-640 KiB, the 768 KiB-1 MiB ROM shadow read-only,
 *                     1 MiB up), one MAP_DMA per section: QEMU's
 *                     vfio_listener_region_add.
 *   b_per_leaf        the same RAM, one MAP_DMA per 4 KiB page: QEMU under a
 *                     vIOMMU, whose replay (vtd_page_walk) notifies vfio of
 *                     each 4 KiB leaf, vfio_iommu_map_notify mapping each.
 *   c_pin             one MAP_DMA of a fresh, never touched buffer of 64 MiB,
 *                     128 MiB, ... up to PIN_MAX_MIB: the kernel faults in and
 *                     pins every page (vfio_pin_pages_remote).
 *   d_unmap_per_range ENTRIES mappings unmapped with one UNMAP_DMA each.
 *   d_unmap_all       the same, with one VFIO_DMA_UNMAP_FLAG_ALL.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096ULL
#define IOVA0 0x100000000ULL /* above 4 GiB: clear of the MSI window */

static int container = -1;

static void die(const char *what)
{
	fprintf(stderr, "vfio-bench: %s: %s\n", what, strerror(errno));
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void map(uint64_t iova, void *vaddr, uint64_t size, uint32_t flags)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .vaddr = (uintptr_t)vaddr, .iova = iova, .size = size,
	};
	if (ioctl(container, VFIO_IOMMU_MAP_DMA, &m))
		die("VFIO_IOMMU_MAP_DMA");
}

static void unmap(uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u))
		die("VFIO_IOMMU_UNMAP_DMA");
}

static void unmap_all(void)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .flags = VFIO_DMA_UNMAP_FLAG_ALL };
	if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &u))
		die("VFIO_IOMMU_UNMAP_DMA (VFIO_DMA_UNMAP_FLAG_ALL)");
}

static void *buffer(uint64_t size, int populate)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (populate ? MAP_POPULATE : 0), -1, 0);
	if (p == MAP_FAILED)
		die("mmap");
	return p;
}

#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

static void map_scattered(char *buf, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		map(IOVA0 + 2 * i * PAGE, buf + 2 * i * PAGE, PAGE, RW);
}

/* q35's low RAM as vfio's listener sees it: the VGA hole at 640 KiB-768 KiB
 * is not RAM, the ROM shadow below 1 MiB is read-only. */
static const struct { uint64_t start, end; uint32_t flags; } sections[] = {
	{ 0x0, 0xa0000, RW },
	{ 0xc0000, 0x100000, VFIO_DMA_MAP_FLAG_READ },
	{ 0x100000, 0, RW }, /* end: the RAM size */
};

int main(int argc, char **argv)
{
	if (argc != 6) {
		fprintf(stderr, "usage: vfio-bench GROUP ENTRIES RAM_MIB PIN_MAX_MIB ROUNDS\n");
		return 2;
	}
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%s", argv[1]);
	uint64_t n = strtoull(argv[2], NULL, 0);
	uint64_t ram = strtoull(argv[3], NULL, 0) << 20;
	uint64_t pin_max = strtoull(argv[4], NULL, 0) << 20;
	int rounds = atoi(argv[5]);

	container = open("/dev/vfio/vfio", O_RDWR);
	if (container < 0)
		die("open /dev/vfio/vfio");
	int group = open(path, O_RDWR);
	if (group < 0)
		die(path);
	if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container))
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die("VFIO_SET_IOMMU");

	/* Every buffer is touched before the timed rounds (MAP_POPULATE, and
	 * a first untimed round), so the rounds time the ioctls, not page faults;
	 * c_pin alone starts from untouched memory. */
	char *scattered = buffer(2 * n * PAGE, 1);
	char *guest = buffer(ram, 1);
	uint64_t best[5] = { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX };
	for (int r = 0; r <= rounds; r++) {
		uint64_t t[5], t0;

		t0 = now_ns();
		map_scattered(scattered, n);
		t[0] = now_ns() - t0;
		unmap_all();

		t0 = now_ns();
		for (unsigned s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
			uint64_t end = sections[s].end ? sections[s].end : ram;
			map(sections[s].start, guest + sections[s].start, end - sections[s].start, sections[s].flags);
		}
		t[1] = now_ns() - t0;
		unmap_all();

		t0 = now_ns();
		for (unsigned s = 0; s < sizeof(sections) / sizeof(sections[0]); s++) {
			uint64_t end = sections[s].end ? sections[s].end : ram;
			for (uint64_t a = sections[s].start; a < end; a += PAGE)
				map(a, guest + a, PAGE, sections[s].flags);
		}
		t[2] = now_ns() - t0;
		unmap_all();

		map_scattered(scattered, n);
		t0 = now_ns();
		for (uint64_t i = 0; i < n; i++)
			unmap(IOVA0 + 2 * i * PAGE, PAGE);
		t[3] = now_ns() - t0;

		map_scattered(scattered, n);
		t0 = now_ns();
		unmap_all();
		t[4] = now_ns() - t0;

		for (int k = 0; r > 0 && k < 5; k++)
			if (t[k] < best[k])
				best[k] = t[k];
	}
	munmap(guest, ram);
	munmap(scattered, 2 * n * PAGE);

	printf("{\"entries\":%llu,\"ram_bytes\":%llu,\"rounds\":%d,"
	       "\"a_map_scattered_ns\":%llu,\"b_per_section_ns\":%llu,\"b_per_leaf_ns\":%llu,"
	       "\"d_unmap_per_range_ns\":%llu,\"d_unmap_all_ns\":%llu,\"c_pin\":[",
	       (unsigned long long)n, (unsigned long long)ram, rounds, (unsigned long long)best[0],
	       (unsigned long long)best[1], (unsigned long long)best[2], (unsigned long long)best[3],
	       (unsigned long long)best[4]);
	/* Pinning: a fresh buffer each time, so each size pays its faults. */
	for (uint64_t size = 64ULL << 20; size <= pin_max; size *= 2) {
		char *p = buffer(size, 0);
		uint64_t t0 = now_ns();
		map(IOVA0, p, size, RW);
		uint64_t t = now_ns() - t0;
		unmap_all();
		munmap(p, size);
		printf("%s{\"bytes\":%llu,\"ns\":%llu}", size == 64ULL << 20 ? "" : ",", (unsigned long long)size, (unsigned long long)t);
	}
	printf("]}\n");
	return 0;
}
