/*
 * memtypes conform agent: drives /dev/kvm on an arm64 host and prints what it saw.
 *
 * Written for memtypes (not derived from kernel or QEMU code).  In the style of the kvm
 * selftests: one small function per case kind, each printing observations; the Python side
 * (memtypes.conform) decides what they mean.  Every observation is one line on stdout:
 *
 *     @@{"case": "...", "obs": "...", ...}
 *
 * Usage:
 *   as init (PID 1, under QEMU):  mounts /proc /sys /dev /tmp, loads /modules/NN-*.ko in order,
 *                                 runs /cases.json, powers off.
 *   live:  memtypes-agent CASES.json   (runs the cases on this host; creates scratch VMs only)
 *
 * Cases (CASES.json) are a JSON array of flat objects; see memtypes/conform/cases.py.  When a
 * case asks for "walk", the agent keeps the vCPU spinning inside the guest, prints
 *     @@{"walk": {"case": "...", "ipa": N}}
 * and waits for one line "@@go ..." on stdin (the harness walks stage 2 through QEMU's
 * gdbstub meanwhile), then releases the guest.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/auxv.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <sys/utsname.h>
#include <termios.h>
#include <unistd.h>
#include <linux/kvm.h>
#include <linux/vfio.h>

/* ---- uapi numbers newer than the cross toolchain's headers (linux 6.1 uapi) ----------------
 * include/uapi/linux/kvm.h (7.3): capabilities, memslot v2, guest_memfd. */
#ifndef KVM_CAP_USER_MEMORY2
#define KVM_CAP_USER_MEMORY2 231
#endif
#ifndef KVM_CAP_GUEST_MEMFD
#define KVM_CAP_GUEST_MEMFD 234
#endif
#define CAP_CACHEABLE_PFNMAP 243
#define CAP_GUEST_MEMFD_FLAGS 244
#ifndef KVM_MEM_GUEST_MEMFD
#define KVM_MEM_GUEST_MEMFD (1UL << 2)
#endif
struct mt_region2 {
	uint32_t slot, flags;
	uint64_t guest_phys_addr, memory_size, userspace_addr, guest_memfd_offset;
	uint32_t guest_memfd, pad1;
	uint64_t pad2[14];
};
struct mt_create_gmem {
	uint64_t size, flags, reserved[6];
};
#define MT_SET_USER_MEMORY_REGION2 _IOW(KVMIO, 0x49, struct mt_region2)
#define MT_CREATE_GUEST_MEMFD _IOWR(KVMIO, 0xd4, struct mt_create_gmem)
#define GMEM_FLAG_MMAP (1ULL << 0)
#define GMEM_FLAG_INIT_SHARED (1ULL << 1)
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 0x0004U
#endif
#ifndef PROT_MTE
#define PROT_MTE 0x20
#endif
#ifndef HWCAP2_MTE
#define HWCAP2_MTE (1 << 18)
#endif

/* ---- guest layout (IPA == VA: the guest runs with its MMU off) ---------------------------- */
#define CODE_IPA 0x10000000UL      /* control slot: guest code, vectors, the release flag */
#define CODE_SIZE 0x10000UL
#define FLAG_OFF 0x8000UL          /* release flag, inside the control slot */
#define MMIO_IPA 0x20000000UL      /* no memslot: every store here is a KVM_EXIT_MMIO report */
#define TEST_IPA 0x40000000UL      /* the slot under test (2 MiB aligned) */
#define TEST_SIZE 0x200000UL
#define MAGIC 0x4d454d5459504553UL /* "MEMTYPES" */
#define RET_INSN 0xd65f03c0U       /* AArch64 RET: what an exec case branches to */

/* MMIO report offsets (from MMIO_IPA) */
#define REP_DONE 0x0               /* the access completed: data = value read/written */
#define REP_EXC 0x8                /* an exception was taken: data = ESR_EL1 */
#define REP_RELEASED 0x10          /* the spin loop was released */
#define REP_FAR 0x18               /* FAR_EL1 after an exception */

/* The guest program.  x0 = target, x1 = op (0 read, 1 write, 2 exec, 3 none), x2 = MMIO_IPA,
 * x3 = release flag address, x4 = MAGIC.  It reports through stores to MMIO_IPA (KVM exits to
 * the agent with the data), then spins until the flag is set.  Its vector table reports the
 * ESR of any exception KVM injects (e.g. a prefetch abort for -ENOEXEC). */
__asm__(
	".pushsection .rodata.guest, \"a\"\n"
	".balign 4096\n"
	".global guest_begin\n"
	"guest_begin:\n"
	"	adr x9, guest_vectors\n"
	"	msr vbar_el1, x9\n"
	"	isb\n"
	"	cmp x1, #0\n"
	"	b.eq 1f\n"
	"	cmp x1, #1\n"
	"	b.eq 2f\n"
	"	cmp x1, #2\n"
	"	b.eq 3f\n"
	"	mov x5, #0\n"
	"	b 4f\n"
	"1:	ldr x5, [x0]\n"
	"	b 4f\n"
	"2:	str x4, [x0]\n"
	"	mov x5, x4\n"
	"	b 4f\n"
	"3:	blr x0\n"
	"	mov x5, #1\n"
	"4:	str x5, [x2]\n"
	"5:	ldr x6, [x3]\n"
	"	cbz x6, 5b\n"
	"	str x6, [x2, #16]\n"
	"6:	b 6b\n"
	".balign 2048\n"
	"guest_vectors:\n"
	".rept 16\n"
	".balign 128\n"
	"	mrs x5, esr_el1\n"
	"	str x5, [x2, #8]\n"
	"	mrs x5, far_el1\n"
	"	str x5, [x2, #24]\n"
	"7:	b 7b\n"
	".endr\n"
	".global guest_end\n"
	"guest_end:\n"
	".popsection\n");
extern const unsigned char guest_begin[], guest_end[];

/* ---- output -------------------------------------------------------------------------------- */
static const char *cur_case = "";

static void jstr(char *dst, size_t n, const char *s)
{
	size_t o = 0;
	for (; *s && o + 7 < n; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			dst[o++] = '\\';
			dst[o++] = c;
		} else if (c < 0x20 || c >= 0x7f) {
			o += snprintf(dst + o, n - o, "\\u%04x", c);
		} else {
			dst[o++] = c;
		}
	}
	dst[o] = 0;
}

/* obs(kind, "\"k\": v, ...") -> @@{"case": cur, "obs": kind, k: v} */
static void obs(const char *kind, const char *fmt, ...)
{
	char body[3072], c[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(body, sizeof body, fmt, ap);
	va_end(ap);
	jstr(c, sizeof c, cur_case);
	printf("@@{\"case\": \"%s\", \"obs\": \"%s\"%s%s}\n", c, kind, body[0] ? ", " : "", body);
	fflush(stdout);
}

static const char *errname(int e)
{
	switch (e) {
	case 0: return "";
	case EINVAL: return "EINVAL";
	case EFAULT: return "EFAULT";
	case ENOEXEC: return "ENOEXEC";
	case EBUSY: return "EBUSY";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case ENOMEM: return "ENOMEM";
	case ENODEV: return "ENODEV";
	case ENOTTY: return "ENOTTY";
	case EINTR: return "EINTR";
	case EAGAIN: return "EAGAIN";
	case EHWPOISON: return "EHWPOISON";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	case ENOSYS: return "ENOSYS";
	case EACCES: return "EACCES";
	case E2BIG: return "E2BIG";
	case ERANGE: return "ERANGE";
	case EIO: return "EIO";
	case EBADF: return "EBADF";
	case ENXIO: return "ENXIO";
	case ENOSPC: return "ENOSPC";
	case EOVERFLOW: return "EOVERFLOW";
	default: {
		/* an errno this list lacks: its number ("E5"), never one shared name that could
		 * make two different errors look alike; a ring of buffers for several per line */
		static char ring[4][16];
		static unsigned next;
		char *b = ring[next++ % 4];
		snprintf(b, sizeof ring[0], "E%d", e);
		return b;
	}
	}
}

/* ---- a minimal reader for the cases file: an array of flat objects ------------------------- */
#define MAXKEYS 24
struct kv { char key[32]; char val[192]; };
struct jcase { int n; struct kv kv[MAXKEYS]; };

static const char *jskip(const char *p) { while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t' || *p == ',') p++; return p; }

static const char *jread_str(const char *p, char *out, size_t n)
{
	size_t o = 0;
	if (*p != '"') return NULL;
	for (p++; *p && *p != '"'; p++) {
		char c = *p;
		if (c == '\\' && p[1]) c = *++p;
		if (o + 1 < n) out[o++] = c;
	}
	out[o] = 0;
	return *p == '"' ? p + 1 : NULL;
}

static const char *jread_obj(const char *p, struct jcase *c)
{
	c->n = 0;
	p = jskip(p);
	if (*p != '{') return NULL;
	p = jskip(p + 1);
	while (*p && *p != '}') {
		struct kv tmp, *kv = c->n < MAXKEYS ? &c->kv[c->n] : &tmp;
		p = jread_str(jskip(p), kv->key, sizeof kv->key);
		if (!p) return NULL;
		p = jskip(p);
		if (*p != ':') return NULL;
		p = jskip(p + 1);
		if (*p == '"') {
			p = jread_str(p, kv->val, sizeof kv->val);
			if (!p) return NULL;
		} else {
			size_t o = 0;
			while (*p && *p != ',' && *p != '}' && *p != ' ' && *p != '\n') {
				if (o + 1 < sizeof kv->val) kv->val[o++] = *p;
				p++;
			}
			kv->val[o] = 0;
		}
		if (c->n < MAXKEYS) c->n++;
		p = jskip(p);
	}
	return *p == '}' ? p + 1 : NULL;
}

static const char *get(const struct jcase *c, const char *k, const char *dflt)
{
	for (int i = 0; i < c->n; i++)
		if (!strcmp(c->kv[i].key, k))
			return strcmp(c->kv[i].val, "null") ? c->kv[i].val : dflt;
	return dflt;
}
static long geti(const struct jcase *c, const char *k, long dflt)
{
	const char *v = get(c, k, NULL);
	if (!v) return dflt;
	if (!strcmp(v, "true")) return 1;
	if (!strcmp(v, "false")) return 0;
	return strtol(v, NULL, 0);
}
static int has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = list; p && *p;) {
		if (!strncmp(p, w, n) && (p[n] == ',' || p[n] == 0)) return 1;
		p = strchr(p, ',');
		if (p) p++;
	}
	return 0;
}

/* ---- host facts ---------------------------------------------------------------------------- */
static int kvm_fd = -1;
static int is_init;

static void host_facts(void)
{
	struct utsname u;
	uint64_t ctr = 0;
	char rel[256];
	uname(&u);
	jstr(rel, sizeof rel, u.release);
	__asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
	unsigned long hw2 = getauxval(AT_HWCAP2);
	cur_case = "host";
	obs("host", "\"release\": \"%s\", \"machine\": \"%s\", \"ctr_el0\": %llu, \"dic\": %d, \"idc\": %d, "
	    "\"hwcap2_mte\": %d, \"kvm\": %d", rel, u.machine, (unsigned long long)ctr,
	    (int)((ctr >> 29) & 1), (int)((ctr >> 28) & 1), !!(hw2 & HWCAP2_MTE), kvm_fd >= 0);
	/* the kernel log says which CPU features the kernel detected (FWB, MTE, DIC, VHE/nVHE) */
	int k = open("/dev/kmsg", O_RDONLY | O_NONBLOCK);
	if (k < 0) return;
	/* one record per read; a buffer too small for a record is EINVAL without moving on, so
	 * room for the longest record; EPIPE (records overwritten meanwhile) moves on */
	char buf[8192], line[1100];
	for (;;) {
		ssize_t n = read(k, buf, sizeof buf - 1);
		if (n < 0 && errno == EPIPE) continue;
		if (n <= 0) break;
		buf[n] = 0;
		char *msg = strchr(buf, ';');
		msg = msg ? msg + 1 : buf;
		char *nl = strchr(msg, '\n');
		if (nl) *nl = 0;
		if (strstr(msg, "CPU features: detected") || strstr(msg, "kvm [") || strstr(msg, "KVM") ||
		    strstr(msg, "Hyp mode") || strstr(msg, "VHE") || strstr(msg, "MTE") ||
		    strstr(msg, "Memory Tagging") || strstr(msg, "Force Write-Back") || strstr(msg, "vfio")) {
			jstr(line, sizeof line, msg);
			obs("kmsg", "\"line\": \"%s\"", line);
		}
	}
	close(k);
}

/* ---- capabilities -------------------------------------------------------------------------- */
/* KVM_CHECK_EXTENSION on /dev/kvm and on a fresh VM fd for each capability the case lists
 * ("caps": "16,81,..."; memtypes sends every capability its model knows) */
static void case_caps(const struct jcase *c)
{
	const char *list = get(c, "caps", "16,205");
	int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	for (const char *p = list; p && *p;) {
		int cap = (int)strtol(p, NULL, 10);
		errno = 0;
		int s = ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap);
		int se = s < 0 ? errno : 0;
		errno = 0;
		int v = vm >= 0 ? ioctl(vm, KVM_CHECK_EXTENSION, cap) : -1;
		int ve = v < 0 ? errno : 0;
		obs("cap", "\"cap\": %d, \"system\": %d, \"system_errno\": \"%s\", \"vm\": %d, \"vm_errno\": \"%s\"",
		    cap, s, errname(se), v, errname(ve));
		p = strchr(p, ',');
		if (p) p++;
	}
	if (vm >= 0) close(vm);
}

/* KVM_ENABLE_CAP(KVM_CAP_ARM_MTE) before and after a vCPU exists */
static void case_mte_cap_order(void)
{
	struct kvm_enable_cap cap = {.cap = KVM_CAP_ARM_MTE};
	int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm < 0) { obs("error", "\"what\": \"KVM_CREATE_VM\", \"errno\": \"%s\"", errname(errno)); return; }
	int r = ioctl(vm, KVM_ENABLE_CAP, &cap);
	obs("enable_cap", "\"cap\": 205, \"when\": \"before-vcpu\", \"ret\": %d, \"errno\": \"%s\"", r, errname(r < 0 ? errno : 0));
	close(vm);
	vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm < 0) { obs("error", "\"what\": \"KVM_CREATE_VM\", \"errno\": \"%s\"", errname(errno)); return; }
	int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	r = ioctl(vm, KVM_ENABLE_CAP, &cap);
	obs("enable_cap", "\"cap\": 205, \"when\": \"after-vcpu\", \"vcpu\": %d, \"ret\": %d, \"errno\": \"%s\"",
	    vcpu >= 0, r, errname(r < 0 ? errno : 0));
	if (vcpu >= 0) close(vcpu);
	close(vm);
}

/* ---- backings: what the VMM maps over the slot's range ----------------------------------- */
static char pci_dev[280];   /* /sys/bus/pci/devices/XXXX with a prefetchable 2 MiB BAR2 (ivshmem) */
static int vfio_container = -1, vfio_group = -1, vfio_device = -1;
static uint64_t vfio_bar_off;

static int find_ivshmem(void)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *e;
	if (!d) return -1;
	while ((e = readdir(d))) {
		char p[300], v[32] = {0};
		if (e->d_name[0] == '.') continue;
		snprintf(p, sizeof p, "/sys/bus/pci/devices/%s/vendor", e->d_name);
		int f = open(p, O_RDONLY);
		if (f < 0) continue;
		ssize_t n = read(f, v, sizeof v - 1);
		close(f);
		if (n > 0 && !strncmp(v, "0x1af4", 6)) {
			snprintf(p, sizeof p, "/sys/bus/pci/devices/%s/device", e->d_name);
			f = open(p, O_RDONLY);
			memset(v, 0, sizeof v);
			if (f >= 0) { n = read(f, v, sizeof v - 1); close(f); }
			if (!strncmp(v, "0x1110", 6)) {
				snprintf(pci_dev, sizeof pci_dev, "/sys/bus/pci/devices/%s", e->d_name);
				closedir(d);
				return 0;
			}
		}
	}
	closedir(d);
	return -1;
}

static int write_file(const char *path, const char *s)
{
	int f = open(path, O_WRONLY);
	if (f < 0) return -errno;
	ssize_t n = write(f, s, strlen(s));
	int e = n < 0 ? -errno : 0;
	close(f);
	return e;
}

static void vfio_reset(void)
{
	if (vfio_device >= 0) close(vfio_device);
	if (vfio_group >= 0) close(vfio_group);
	if (vfio_container >= 0) close(vfio_container);
	vfio_device = vfio_group = vfio_container = -1;
}

/* bind the ivshmem device to vfio-pci and open it through a type1 container; on failure
 * nothing stays open (the next vfio case tries again from the start, not on a held group) */
static int vfio_setup_once(void);
static int vfio_setup(void)
{
	if (vfio_device >= 0) return 0;
	int e = vfio_setup_once();
	if (e) vfio_reset();
	return e;
}

static int vfio_setup_once(void)
{
	char p[400], link[300], grp[64];
	if (vfio_device >= 0) return 0;
	const char *named = getenv("MEMTYPES_VFIO_BDF");   /* live: only the device the user named */
	if (named && !pci_dev[0]) snprintf(pci_dev, sizeof pci_dev, "/sys/bus/pci/devices/%s", named);
	if (!named && !is_init) return -EPERM;
	if (!pci_dev[0] && find_ivshmem()) return -ENODEV;
	const char *bdf = strrchr(pci_dev, '/') + 1;
	snprintf(p, sizeof p, "%s/driver_override", pci_dev);
	write_file(p, "vfio-pci");
	snprintf(p, sizeof p, "%s/driver/unbind", pci_dev);
	write_file(p, bdf);
	write_file("/sys/bus/pci/drivers_probe", bdf);
	snprintf(p, sizeof p, "%s/iommu_group", pci_dev);
	ssize_t n = readlink(p, link, sizeof link - 1);
	if (n < 0) return -errno;
	link[n] = 0;
	snprintf(grp, sizeof grp, "/dev/vfio/%s", strrchr(link, '/') + 1);
	vfio_container = open("/dev/vfio/vfio", O_RDWR);
	if (vfio_container < 0) return -errno;
	vfio_group = open(grp, O_RDWR);
	if (vfio_group < 0) return -errno;
	if (ioctl(vfio_group, VFIO_GROUP_SET_CONTAINER, &vfio_container)) return -errno;
	if (ioctl(vfio_container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)) return -errno;
	vfio_device = ioctl(vfio_group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (vfio_device < 0) { int e = -errno; vfio_device = -1; return e; }
	struct vfio_region_info ri = {.argsz = sizeof ri, .index = 2};
	if (ioctl(vfio_device, VFIO_DEVICE_GET_REGION_INFO, &ri)) return -errno;
	vfio_bar_off = ri.offset;
	return 0;
}

/* Reserve a 2 MiB-aligned hva (or one deliberately 4 KiB off a 2 MiB boundary) inside a
 * larger PROT_NONE reservation, which resv and resv_size return for the caller to unmap. */
static void *aligned_hva(size_t size, int misalign, uint8_t **resv, size_t *resv_size)
{
	uint8_t *p = mmap(NULL, size + 0x400000, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) return NULL;
	*resv = p;
	*resv_size = size + 0x400000;
	uintptr_t a = ((uintptr_t)p + 0x1fffff) & ~0x1fffffUL;
	if (misalign) a += 0x1000;
	return (void *)a;
}

static int memfd_file(const char *name, unsigned flags, size_t size)
{
	int fd = (int)syscall(SYS_memfd_create, name, flags);
	if (fd >= 0 && ftruncate(fd, (off_t)size)) { close(fd); return -1; }
	return fd;
}

/* Map KIND at hva (MAP_FIXED).  Returns the mapping or MAP_FAILED; *why says what failed. */
static void *map_backing(const char *kind, void *hva, size_t size, int prot, char *why, size_t nwhy)
{
	int fl = MAP_FIXED, fd = -1;
	off_t off = 0;
	why[0] = 0;
	if (!strcmp(kind, "anon-private") || !strcmp(kind, "anon")) {
		fl |= MAP_PRIVATE | MAP_ANONYMOUS;
	} else if (!strcmp(kind, "anon-shared")) {
		fl |= MAP_SHARED | MAP_ANONYMOUS;
	} else if (!strcmp(kind, "memfd-private") || !strcmp(kind, "memfd-shared")) {
		fd = memfd_file("mt", 0, size);
		fl |= strstr(kind, "private") ? MAP_PRIVATE : MAP_SHARED;
	} else if (!strncmp(kind, "tmpfs-", 6) || !strncmp(kind, "ramfs-", 6)) {
		char path[64];
		snprintf(path, sizeof path, "/%.5s/mt-file", kind);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd >= 0 && ftruncate(fd, (off_t)size)) { close(fd); fd = -1; }
		fl |= strstr(kind, "private") ? MAP_PRIVATE : MAP_SHARED;
	} else if (!strcmp(kind, "devzero-private")) {
		fd = open("/dev/zero", O_RDWR);
		fl |= MAP_PRIVATE;
	} else if (!strcmp(kind, "hugetlb-memfd")) {
		fd = memfd_file("mt-huge", MFD_HUGETLB, size);
		fl |= MAP_SHARED;
	} else if (!strcmp(kind, "hugetlb-anon")) {
		fl |= MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
	} else if (!strcmp(kind, "pci-resource") || !strcmp(kind, "pci-resource-wc")) {
		char path[400];
		if (!pci_dev[0] && find_ivshmem()) { snprintf(why, nwhy, "no ivshmem PCI device"); errno = ENODEV; return MAP_FAILED; }
		/* as a VMM's device model would: enable the device so that its BAR decodes (nothing
		 * else binds ivshmem here; without this 6.1 left memory decoding off) */
		snprintf(path, sizeof path, "%s/enable", pci_dev);
		write_file(path, "1");
		snprintf(path, sizeof path, "%s/resource2%s", pci_dev, strstr(kind, "-wc") ? "_wc" : "");
		fd = open(path, O_RDWR | O_SYNC);
		fl |= MAP_SHARED;
	} else if (!strcmp(kind, "vfio-pci-bar")) {
		int e = vfio_setup();
		if (e) { snprintf(why, nwhy, "vfio setup"); errno = -e; return MAP_FAILED; }
		fd = dup(vfio_device);
		off = (off_t)vfio_bar_off;
		fl |= MAP_SHARED;
	} else if (!strcmp(kind, "hole")) {
		munmap(hva, size);
		return hva;
	} else {
		snprintf(why, nwhy, "unknown backing");
		errno = EINVAL;
		return MAP_FAILED;
	}
	if (!strncmp(kind, "hugetlb", 7) || fd >= 0 || (fl & MAP_ANONYMOUS)) {
		void *m = mmap(hva, size, prot, fl, fd, off);
		int e = errno;
		if (fd >= 0) close(fd);
		if (m == MAP_FAILED) snprintf(why, nwhy, "mmap");
		errno = e;
		return m;
	}
	snprintf(why, nwhy, "open");
	return MAP_FAILED;
}

/* ---- one VM, one slot, one access ---------------------------------------------------------- */
struct vm {
	int fd, vcpu, gmem;
	struct kvm_run *run;
	long run_size;
	uint8_t *code;
	uint8_t *test;
	uint8_t *resv;             /* aligned_hva()'s whole reservation: the test mapping lies inside */
	size_t resv_size;
};

static volatile sig_atomic_t alarmed;
static void on_alarm(int s) { (void)s; alarmed = 1; }

static int set_reg(int vcpu, uint64_t id, uint64_t v)
{
	struct kvm_one_reg r = {.id = id, .addr = (uint64_t)(uintptr_t)&v};
	return ioctl(vcpu, KVM_SET_ONE_REG, &r);
}
#define CORE_REG(x) (KVM_REG_ARM64 | KVM_REG_SIZE_U64 | KVM_REG_ARM_CORE | KVM_REG_ARM_CORE_REG(x))

static int vcpu_create(struct vm *v)
{
	struct kvm_vcpu_init init;
	v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0);
	if (v->vcpu < 0) return -errno;
	if (ioctl(v->fd, KVM_ARM_PREFERRED_TARGET, &init)) return -errno;
	if (ioctl(v->vcpu, KVM_ARM_VCPU_INIT, &init)) return -errno;
	long sz = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (sz <= 0) return sz < 0 ? -errno : -EINVAL;
	v->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
	if (v->run == MAP_FAILED) { v->run = NULL; return -errno; }
	v->run_size = sz;
	return 0;
}

struct run_out { int ret, err, exit_reason; uint64_t mmio_addr, data; int mmio_write; };

static void run_once(struct vm *v, struct run_out *o, int timeout_ms)
{
	struct itimerval it = {{0, 0}, {timeout_ms / 1000, (timeout_ms % 1000) * 1000}};
	alarmed = 0;
	if (timeout_ms) setitimer(ITIMER_REAL, &it, NULL);
	o->ret = ioctl(v->vcpu, KVM_RUN, 0);
	o->err = o->ret < 0 ? errno : 0;
	if (timeout_ms) { struct itimerval z = {{0, 0}, {0, 0}}; setitimer(ITIMER_REAL, &z, NULL); }
	o->exit_reason = (int)v->run->exit_reason;
	o->mmio_addr = o->data = 0;
	o->mmio_write = 0;
	if (o->ret == 0 && v->run->exit_reason == KVM_EXIT_MMIO) {
		o->mmio_addr = v->run->mmio.phys_addr;
		o->mmio_write = v->run->mmio.is_write;
		memcpy(&o->data, v->run->mmio.data, 8);
	}
}

static void *spin_thread(void *arg)
{
	struct vm *v = arg;
	static struct run_out o;
	run_once(v, &o, 0);
	return &o;
}

static void report_run(const char *phase, const struct run_out *o)
{
	const char *what = "other";
	if (o->ret < 0) what = "error";
	else if (o->exit_reason == KVM_EXIT_MMIO && o->mmio_addr == MMIO_IPA + REP_DONE) what = "done";
	else if (o->exit_reason == KVM_EXIT_MMIO && o->mmio_addr == MMIO_IPA + REP_EXC) what = "exception";
	else if (o->exit_reason == KVM_EXIT_MMIO) what = "mmio";
	obs("run", "\"phase\": \"%s\", \"outcome\": \"%s\", \"ret\": %d, \"errno\": \"%s\", \"exit_reason\": %d, "
	    "\"mmio_addr\": %llu, \"mmio_write\": %d, \"data\": %llu, \"ec\": %d",
	    phase, what, o->ret, errname(o->err), o->exit_reason, (unsigned long long)o->mmio_addr,
	    o->mmio_write, (unsigned long long)o->data,
	    !strcmp(what, "exception") ? (int)((o->data >> 26) & 0x3f) : -1);
}

static int enable_mte(struct vm *v, const char *when)
{
	struct kvm_enable_cap cap = {.cap = KVM_CAP_ARM_MTE};
	int r = ioctl(v->fd, KVM_ENABLE_CAP, &cap);
	obs("enable_cap", "\"cap\": 205, \"when\": \"%s\", \"ret\": %d, \"errno\": \"%s\"", when, r, errname(r < 0 ? errno : 0));
	return r;
}

/* set allocation tag 3 on the first granules of p (host memory mapped PROT_MTE) */
static void pretag(uint8_t *p, int granules)
{
	for (int i = 0; i < granules; i++) {
		uintptr_t a = ((uintptr_t)p + 16 * (uintptr_t)i) | (3UL << 56);
		/* STG x0, [x0] (FEAT_MTE; encoded by hand: the toolchain's default -march lacks it) */
		__asm__ volatile("mov x0, %0\n\t.inst 0xd9200800" : : "r"(a) : "x0", "memory");
	}
}

static void copy_tags(struct vm *v, uint64_t ipa, uint64_t len, uint64_t flags, const char *what)
{
	static uint8_t tags[4096];
	struct kvm_arm_copy_mte_tags c = {.guest_ipa = ipa, .length = len, .addr = tags, .flags = flags};
	memset(tags, 0xee, sizeof tags);
	if (flags == KVM_ARM_TAGS_TO_GUEST) memset(tags, 0, sizeof tags);
	long r = ioctl(v->fd, KVM_ARM_MTE_COPY_TAGS, &c);
	int e = r < 0 ? errno : 0;
	int nonzero = 0, n = r > 0 ? (int)(r / 16) : 0;
	for (int i = 0; i < n && i < (int)sizeof tags; i++) nonzero += tags[i] != 0;
	obs("copy_tags", "\"what\": \"%s\", \"ret\": %ld, \"errno\": \"%s\", \"granules\": %d, \"nonzero\": %d, "
	    "\"first\": [%d, %d, %d, %d]", what, r, errname(e), n, nonzero,
	    n > 0 ? tags[0] : -1, n > 1 ? tags[1] : -1, n > 2 ? tags[2] : -1, n > 3 ? tags[3] : -1);
}

static void vm_close(struct vm *v)
{
	if (v->vcpu >= 0) close(v->vcpu);
	if (v->gmem >= 0) close(v->gmem);
	if (v->fd >= 0) close(v->fd);
	if (v->run) munmap(v->run, (size_t)v->run_size);
	if (v->code && v->code != MAP_FAILED) munmap(v->code, CODE_SIZE);
	/* the whole reservation, test mapping included (a hole or a failed map leaves the rest) */
	if (v->resv) munmap(v->resv, v->resv_size);
	else if (v->test) munmap(v->test, TEST_SIZE);
}

/* A memslot over one backing and one guest access: the general case.  Keys:
 *   backing, flags ("readonly,log_dirty"), mte ("off"|"before"|"after"), remap (a backing),
 *   access ("read"|"write"|"exec"|"none"), walk (0/1), pretag (0/1), tags (0/1: copy tags after),
 *   misalign (0/1: hva 4 KiB off a 2 MiB boundary), gmem (0/1: KVM_CREATE_GUEST_MEMFD slot) */
static void case_slot(const struct jcase *c)
{
	struct vm v = {.fd = -1, .vcpu = -1, .gmem = -1};
	const char *backing = get(c, "backing", "anon-private");
	const char *flags = get(c, "flags", "");
	const char *mte = get(c, "mte", "off");
	const char *remap = get(c, "remap", NULL);
	const char *access = get(c, "access", "read");
	int walk = (int)geti(c, "walk", 0), want_tags = (int)geti(c, "tags", 0);
	int is_gmem = !strcmp(backing, "guest-memfd");
	char why[64];

	v.fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (v.fd < 0) { obs("error", "\"what\": \"KVM_CREATE_VM\", \"errno\": \"%s\"", errname(errno)); return; }
	if (!strcmp(mte, "before") && enable_mte(&v, "before-memslot") < 0) { /* observed; go on */ }

	/* the control slot: guest code, vectors and the release flag.  Private anonymous memory:
	 * an MTE VM refuses VM_SHARED memslots on 5.14-6.1 and non-VM_MTE_ALLOWED ones later, and
	 * the control slot must work in every VM the cases create. */
	v.code = mmap(NULL, CODE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (v.code == MAP_FAILED) {
		obs("error", "\"what\": \"control slot mmap\", \"errno\": \"%s\"", errname(errno));
		v.code = NULL;
		vm_close(&v);
		return;
	}
	memcpy(v.code, guest_begin, (size_t)(guest_end - guest_begin));
	struct kvm_userspace_memory_region cr = {.slot = 0, .guest_phys_addr = CODE_IPA, .memory_size = CODE_SIZE,
						 .userspace_addr = (uint64_t)(uintptr_t)v.code};
	if (ioctl(v.fd, KVM_SET_USER_MEMORY_REGION, &cr)) {
		obs("error", "\"what\": \"control memslot\", \"errno\": \"%s\"", errname(errno));
		vm_close(&v);
		return;
	}

	/* the slot under test */
	uint32_t slot_flags = 0;
	if (has_word(flags, "readonly")) slot_flags |= KVM_MEM_READONLY;
	if (has_word(flags, "log_dirty")) slot_flags |= KVM_MEM_LOG_DIRTY_PAGES;
	uint8_t *hva = aligned_hva(TEST_SIZE, (int)geti(c, "misalign", 0), &v.resv, &v.resv_size);
	if (!hva) {
		obs("error", "\"what\": \"hva reservation\", \"errno\": \"%s\"", errname(errno));
		vm_close(&v);
		return;
	}
	int prot = PROT_READ | PROT_WRITE | (geti(c, "pretag", 0) ? PROT_MTE : 0);
	int r, e;
	if (is_gmem) {
		struct mt_create_gmem g = {.size = TEST_SIZE, .flags = (uint64_t)geti(c, "gmem_flags", 3)};
		v.gmem = ioctl(v.fd, MT_CREATE_GUEST_MEMFD, &g);
		if (v.gmem < 0) {
			obs("memslot", "\"ret\": -1, \"errno\": \"%s\", \"step\": \"KVM_CREATE_GUEST_MEMFD\"", errname(errno));
			vm_close(&v);
			return;
		}
		if (geti(c, "gmem_mmap", 1)) {
			uint8_t *m = mmap(hva, TEST_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, v.gmem, 0);
			obs("mmap", "\"what\": \"guest_memfd\", \"ok\": %d, \"errno\": \"%s\"", m != MAP_FAILED, errname(m == MAP_FAILED ? errno : 0));
			if (m != MAP_FAILED) v.test = m;
		}
		struct mt_region2 r2 = {.slot = 1, .flags = slot_flags | KVM_MEM_GUEST_MEMFD, .guest_phys_addr = TEST_IPA,
					.memory_size = TEST_SIZE, .userspace_addr = (uint64_t)(uintptr_t)hva,
					.guest_memfd = (uint32_t)v.gmem};
		r = ioctl(v.fd, MT_SET_USER_MEMORY_REGION2, &r2);
		e = r ? errno : 0;
	} else {
		uint8_t *m = map_backing(backing, hva, TEST_SIZE, prot, why, sizeof why);
		if (m == MAP_FAILED) {
			obs("mmap", "\"what\": \"%s\", \"ok\": 0, \"errno\": \"%s\", \"step\": \"%s\"", backing, errname(errno), why);
			vm_close(&v);
			return;
		}
		v.test = strcmp(backing, "hole") ? m : NULL;
		if (v.test) {
			/* what the guest should find: MAGIC, or a RET for an exec case */
			if (!strcmp(access, "exec")) *(volatile uint32_t *)v.test = RET_INSN;
			else *(volatile uint64_t *)v.test = MAGIC;
			if (geti(c, "pretag", 0)) pretag(v.test, 4);
		}
		struct kvm_userspace_memory_region tr = {.slot = 1, .flags = slot_flags, .guest_phys_addr = TEST_IPA,
							 .memory_size = TEST_SIZE, .userspace_addr = (uint64_t)(uintptr_t)hva};
		r = ioctl(v.fd, KVM_SET_USER_MEMORY_REGION, &tr);
		e = r ? errno : 0;
	}
	obs("memslot", "\"ret\": %d, \"errno\": \"%s\"", r, errname(e));
	if (r) { vm_close(&v); return; }

	if (!strcmp(mte, "after")) enable_mte(&v, "after-memslot");
	if (remap) {
		uint8_t *m = map_backing(remap, hva, TEST_SIZE, PROT_READ | PROT_WRITE, why, sizeof why);
		obs("mmap", "\"what\": \"remap %s\", \"ok\": %d, \"errno\": \"%s\"", remap, m != MAP_FAILED, errname(m == MAP_FAILED ? errno : 0));
		if (m == MAP_FAILED) { vm_close(&v); return; }
		v.test = strcmp(remap, "hole") ? m : NULL;
		if (v.test) {
			if (!strcmp(access, "exec")) *(volatile uint32_t *)v.test = RET_INSN;
			else *(volatile uint64_t *)v.test = MAGIC;
		}
	}
	if (!strcmp(access, "exec") && is_gmem && v.test) *(volatile uint32_t *)v.test = RET_INSN;
	else if (is_gmem && v.test) *(volatile uint64_t *)v.test = MAGIC;

	if ((r = vcpu_create(&v))) {
		obs("error", "\"what\": \"vcpu\", \"errno\": \"%s\"", errname(-r));
		vm_close(&v);
		return;
	}
	long op = !strcmp(access, "read") ? 0 : !strcmp(access, "write") ? 1 : !strcmp(access, "exec") ? 2 : 3;
	set_reg(v.vcpu, CORE_REG(regs.pc), CODE_IPA);
	set_reg(v.vcpu, CORE_REG(regs.regs[0]), TEST_IPA);
	set_reg(v.vcpu, CORE_REG(regs.regs[1]), (uint64_t)op);
	set_reg(v.vcpu, CORE_REG(regs.regs[2]), MMIO_IPA);
	set_reg(v.vcpu, CORE_REG(regs.regs[3]), CODE_IPA + FLAG_OFF);
	set_reg(v.vcpu, CORE_REG(regs.regs[4]), MAGIC);

	struct run_out o;
	run_once(&v, &o, 2000);
	report_run("access", &o);
	int done = o.ret == 0 && o.exit_reason == KVM_EXIT_MMIO && o.mmio_addr == MMIO_IPA + REP_DONE;
	if (done && !strcmp(access, "read"))
		obs("read", "\"value_ok\": %d", o.data == (v.test ? MAGIC : 0) || (v.test == NULL && o.data == 0));
	if (done && walk) {
		/* keep the vCPU in the guest (spinning on the flag) while the harness walks stage 2 */
		pthread_t t;
		*(volatile uint64_t *)(v.code + FLAG_OFF) = 0;
		int pe = pthread_create(&t, NULL, spin_thread, &v);
		if (pe) {
			obs("error", "\"what\": \"walk thread\", \"errno\": \"%s\"", errname(pe));
			goto tags;
		}
		sched_yield();   /* let the vCPU thread enter the guest; the harness retries until it has */
		char cc[256], line[4096];
		jstr(cc, sizeof cc, cur_case);
		printf("@@{\"walk\": {\"id\": \"%s\", \"ipa\": %lu}}\n", cc, TEST_IPA);
		fflush(stdout);
		while (fgets(line, sizeof line, stdin) && strncmp(line, "@@go", 4)) {}
		*(volatile uint64_t *)(v.code + FLAG_OFF) = 1;
		__sync_synchronize();
		void *res;
		pthread_join(t, &res);
		report_run("release", res);
	}
tags:
	if (want_tags) {
		copy_tags(&v, TEST_IPA, 4096, KVM_ARM_TAGS_FROM_GUEST, "from-guest");
		if (geti(c, "tags_errors", 0)) {
			copy_tags(&v, TEST_IPA + 8, 4096, KVM_ARM_TAGS_FROM_GUEST, "unaligned-ipa");
			copy_tags(&v, TEST_IPA, 4096, 2, "bad-flags");
			copy_tags(&v, 0x7000000000UL & 0xffffff000UL, 4096, KVM_ARM_TAGS_FROM_GUEST, "no-memslot");
			copy_tags(&v, TEST_IPA, 4096, KVM_ARM_TAGS_TO_GUEST, "to-guest");
		}
	}
	vm_close(&v);
}

/* ---- init duties ----------------------------------------------------------------------------- */
static void load_modules(void)
{
	DIR *d = opendir("/modules");
	struct dirent **names;
	if (!d) return;
	closedir(d);
	int n = scandir("/modules", &names, NULL, alphasort);
	for (int i = 0; i < n; i++) {
		char p[300];
		if (names[i]->d_name[0] == '.') { free(names[i]); continue; }
		snprintf(p, sizeof p, "/modules/%s", names[i]->d_name);
		int fd = open(p, O_RDONLY);
		long r = fd >= 0 ? syscall(SYS_finit_module, fd, "", 0) : -1;
		int e = r ? errno : 0;
		if (fd >= 0) close(fd);
		cur_case = "init";
		char nm[256];
		jstr(nm, sizeof nm, names[i]->d_name);
		obs("module", "\"name\": \"%s\", \"ret\": %ld, \"errno\": \"%s\"", nm, r, errname(e == EEXIST ? 0 : e));
		free(names[i]);
	}
	free(names);
}

static void init_mounts(void)
{
	mount("proc", "/proc", "proc", 0, NULL);
	mount("sysfs", "/sys", "sysfs", 0, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
	mkdir("/tmpfs", 0755);
	mkdir("/ramfs", 0755);
	mount("tmpfs", "/tmpfs", "tmpfs", 0, NULL);
	mount("ramfs", "/ramfs", "ramfs", 0, NULL);
	write_file("/proc/sys/vm/nr_hugepages", "8");
	write_file("/proc/sys/kernel/printk", "1");
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static char *slurp(const char *path)
{
	int f = open(path, O_RDONLY);
	if (f < 0) return NULL;
	struct stat st;
	if (fstat(f, &st) || !S_ISREG(st.st_mode) || st.st_size > (16 << 20)) { close(f); return NULL; }
	char *b = calloc(1, (size_t)st.st_size + 1);
	ssize_t n = read(f, b, (size_t)st.st_size);
	close(f);
	if (n < 0) { free(b); return NULL; }
	b[n] = 0;
	return b;
}

int main(int argc, char **argv)
{
	is_init = getpid() == 1;
	const char *path = argc > 1 ? argv[1] : "/cases.json";
	struct sigaction sa = {.sa_handler = on_alarm};
	sigaction(SIGALRM, &sa, NULL);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (is_init) {
		struct termios t;
		/* the harness answers walks on the console: do not echo its lines back */
		if (!tcgetattr(0, &t)) {
			t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
			tcsetattr(0, TCSANOW, &t);
		}
		init_mounts();
		load_modules();
	}
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	host_facts();
	char *text = slurp(path);
	if (!text) {
		cur_case = "init";
		obs("error", "\"what\": \"cases file\", \"errno\": \"%s\"", errname(errno));
	} else if (kvm_fd < 0) {
		cur_case = "init";
		obs("error", "\"what\": \"/dev/kvm\", \"errno\": \"%s\"", errname(errno));
	} else {
		const char *p = strchr(text, '[');
		static struct jcase c;
		static char idbuf[192];
		p = p ? p + 1 : text + strlen(text);
		for (;;) {
			p = jskip(p);
			if (*p != '{') break;
			p = jread_obj(p, &c);
			if (!p) { cur_case = "init"; obs("error", "\"what\": \"cases file syntax\""); break; }
			snprintf(idbuf, sizeof idbuf, "%s", get(&c, "id", "?"));
			cur_case = idbuf;
			const char *kind = get(&c, "kind", "slot");
			obs("start", "\"kind\": \"%s\", \"t_ms\": %ld", kind, now_ms());
			if (!strcmp(kind, "caps")) case_caps(&c);
			else if (!strcmp(kind, "mte-cap-order")) case_mte_cap_order();
			else if (!strcmp(kind, "slot")) case_slot(&c);
			else obs("error", "\"what\": \"unknown case kind\"");
		}
	}
	cur_case = "end";
	printf("@@{\"done\": true, \"t_ms\": %ld}\n", now_ms());
	fflush(stdout);
	if (is_init) {
		sync();
		reboot(RB_POWER_OFF);
	}
	return 0;
}
