/* Shared declarations of img2vm's init (PID 1 of the initramfs img2vm writes); see init.c for the boot sequence. */
#ifndef IMG2VM_INIT_H
#define IMG2VM_INIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Where the initramfs carries the spec; src/guest/initramfs.ts and init-spec.ts write it there. */
#define SPEC_PATH "/img2vm/spec"
#define SPEC_MAGIC "img2vm-init"
#define SPEC_VERSION 4 /* 2 added the service keys, 3 luks-uuid, 4 module-optional */
#define SPEC_MAX_BYTES (1 << 20)
#define NEWROOT "/newroot"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum mode { MODE_INIT, MODE_WORKLOAD, MODE_CONSOLE };
enum net_mode { NET_AUTO, NET_NONE };
enum halt_action { HALT_POWEROFF, HALT_REBOOT, HALT_HALT };

struct strv {
	char **v; /* NULL-terminated */
	int n;
};

/* spec.c: shared by the spec and run-config parsers. */
int cfg_fail(char *err, size_t n, int line, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
void strv_push(struct strv *v, char *s, int cap);

/* jsonout.c: the tool modes' JSON dumps. */
void json_str(const char *s);
void json_strv(const struct strv *v);

struct spec {
	enum mode mode;
	const char *root_uuid;
	const char *luks_uuid; /* the root file system is inside this LUKS2 volume (unlock.c); NULL when clear */
	const char *root_fstype;
	const char *root_options;
	int root_wait; /* seconds */
	const char *hostname;
	struct strv argv, env, modules, dns;
	struct strv optional_modules; /* of modules, those whose failure to load is noted, not fatal */
	struct strv service; /* console mode: the image's command, run beside the console with env, cwd and user */
	const char *cwd;
	const char *user;
	int login;
	enum net_mode net;
	int tmp_tmpfs;
	/* Set by a run config (runcfg.c), not by the spec: 0 = the console as it always was; 1 = docker's -t (a
	 * terminal of rows x cols); 2 = no -t (no echo; stdin /dev/null unless interactive, docker's -i) */
	int tty;
	int interactive;
	int rows, cols;
};

/* What the kernel command line asked for (only img2vm.* and ip=). */
struct ipconf {
	int present; /* ip= given */
	int off;     /* ip=off/none */
	int dhcp;    /* ip=dhcp/on/any/... or no client address */
	uint32_t client, gateway, netmask; /* network byte order; 0 = unset */
	char host[65];
	char iface[16];
	uint32_t dns[2];
};

struct cmdline {
	enum halt_action halt;
	int run; /* img2vm.run: a run config disk is attached (serial RUNCFG_SERIAL) and must be read */
	int root_wait; /* -1 = unset */
	int dhcp_timeout;
	const char *hostname; /* img2vm.hostname= */
	const char *nonce;    /* img2vm.nonce=: img2vm test's boot nonce on a direct-kernel boot (see init.c) */
	struct ipconf ip;
};

struct ids {
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	int ngroups;
	char name[64]; /* empty when the user is numeric and not in passwd */
	char home[256];
	char shell[256]; /* empty when unknown */
};

/* Network facts learned while configuring, for resolv.conf and hosts. */
struct netinfo {
	uint32_t addr;     /* first configured address, network order */
	uint32_t dns[3];
	int ndns;
};

/* util.c */
extern enum halt_action g_halt;
void write_all(int fd, const char *p, size_t n);
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void halt_now(void) __attribute__((noreturn));
double uptime(void);
void sleep_ms(int ms);
char *read_file(const char *path, size_t max, size_t *len);
int write_file(const char *path, const char *data, mode_t mode);
void random_hex(char *out, size_t bytes);
int parse_uint(const char *s, unsigned long max, unsigned long *out);
int mkdir_p(const char *path, mode_t mode);

/* cmdline.c */
void cmdline_parse(const char *text, struct cmdline *out);
int ip_parse(const char *value, struct ipconf *ip);
int ipv4_parse(const char *s, uint32_t *out);
void ipv4_format(uint32_t a, char out[16]);

/* spec.c */
int spec_hexval(char c);
const char *spec_unescape(char *s, const char **why);
int spec_parse(char *buf, size_t len, struct spec *s, char *err, size_t errlen);
void spec_dump(const struct spec *s);

/* runcfg.c: the per-run settings of `img2vm run IMAGE`, on a small read-only disk beside the root */
#define RUNCFG_SERIAL "img2vm-run"
#define RUNCFG_MAGIC "img2vm-run"
#define RUNCFG_VERSION 1
#define RUNCFG_MAX_BYTES (1 << 20)
#define RUNCFG_MAX_VOLUMES 32
#define RUNCFG_STDIN_PORT "img2vm.stdin"
#define RUNCFG_WINSIZE_PORT "img2vm.winsize"
struct volume {
	const char *tag;  /* the virtio-fs tag the host gave the share */
	const char *path; /* where it is mounted in the guest */
	int ro;
};
struct runcfg {
	int present;
	struct strv argv, env;
	const char *cwd, *user;
	int tty, interactive, rows, cols;
	struct volume vol[RUNCFG_MAX_VOLUMES];
	int nvol;
};
int runcfg_parse(char *buf, size_t len, struct runcfg *r, char *err, size_t errlen);
void runcfg_read(int wait_s, struct runcfg *r);
void runcfg_apply(const struct runcfg *r, struct spec *s);
void runcfg_mount(const struct runcfg *r);
void runcfg_dump(const struct runcfg *r);
int runcfg_stdin_port(int wait_s);
void runcfg_winsize_relay(const char *tty);

/* sha256.c */
struct sha256 {
	uint32_t h[8];
	uint64_t len;
	uint8_t buf[64];
	size_t n;
};
void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t n);
void sha256_final(struct sha256 *c, uint8_t out[32]);
void sha256(const void *data, size_t n, uint8_t out[32]);
void hmac_sha256(const void *key, size_t klen, const void *msg, size_t mlen, uint8_t mac[32]);
void pbkdf2_sha256(const void *pass, size_t plen, const void *salt, size_t slen, uint32_t iterations, uint8_t *dk,
		   size_t dklen);

/* json.c */
enum jtype { J_OBJECT, J_ARRAY, J_STRING, J_PRIMITIVE };
struct jtok {
	enum jtype type;
	size_t start, end; /* a string's content without the quotes */
	int parent;
	int next; /* the index of the first token after this one's subtree */
};
int json_parse(const char *s, size_t len, struct jtok *t, int cap);
int json_get(const char *s, const struct jtok *t, int obj, const char *key);
int json_child(const struct jtok *t, int c, int i);
int json_string(const char *s, const struct jtok *t, int i, char *out, size_t outlen);
int json_u64(const char *s, const struct jtok *t, int i, uint64_t *out);
int json_is(const char *s, const struct jtok *t, int i, const char *want);

/* luks.c */
struct luks {
	char uuid[41];
	uint64_t hdr_size;
	char *json;
	size_t json_len;
	struct jtok *tok;
	int ntok;
	int secondary; /* the primary header was damaged: read from the secondary copy */
};
struct luks_segment {
	uint64_t offset, size, iv_tweak; /* bytes; size 0 = dynamic */
	unsigned sector_size;
};
int luks_read(int fd, struct luks *l, char *err, size_t errlen);
void luks_free(struct luks *l);
int luks_segment(const struct luks *l, struct luks_segment *sg, char *err, size_t errlen);
int luks_unlock(int fd, const struct luks *l, const char *pass, size_t plen, uint8_t *key, size_t *klen, int *slot,
		char *err, size_t errlen);

/* aes.c */
struct aes {
	uint8_t rk[240];
	int rounds;
};
int aes_key(struct aes *a, const uint8_t *key, size_t len);
void aes_encrypt(const struct aes *a, uint8_t s[16]);
void aes_decrypt(const struct aes *a, uint8_t s[16]);
int xts_decrypt(const uint8_t *key, size_t klen, uint8_t *buf, size_t len, char *err, size_t errlen);

/* unlock.c */
const char *unlock_root(const char *luks_uuid, int wait_s);
int dm_crypt_params(char *out, size_t cap, const uint8_t *key, size_t klen, const struct luks_segment *sg,
		    unsigned maj, unsigned min);
int luks_tool_main(const char *path);

/* root.c */
void load_modules(const struct spec *s);
const char *wait_root(const char *uuid, int seconds);
void mount_root(const char *dev, const struct spec *s);
void switch_root(void);
void mount_runtime(const struct spec *s);

/* net.c */
void net_setup(const struct spec *s, const struct cmdline *c, struct netinfo *ni);
void write_etc(const struct spec *s, const char *hostname, const struct netinfo *ni);
int if_set_addr(const char *ifname, uint32_t addr, uint32_t mask, int mtu);
int route_add_default(const char *ifname, uint32_t gw);
int if_up(const char *ifname);

/* dhcp.c */
struct lease {
	uint32_t addr, mask, router, server;
	uint32_t dns[3];
	int ndns, mtu;
};
int dhcp_run(char ifnames[][16], int nif, int timeout_s, const char *hostname, struct lease *leases, int *got);
int dhcp_parse_reply(const uint8_t *pkt, size_t len, uint32_t xid, const uint8_t mac[6], int *type, struct lease *l);

/* user.c */
int resolve_user(const char *root, const char *spec, struct ids *out, char *err, size_t errlen);

/* run.c */
struct child_plan {
	char **argv;
	char **envp;
	int envn, envcap;
	struct ids ids;
	const char *cwd;
	int session; /* make the console its controlling tty (a getty opens the tty itself) */
	int tty, interactive, rows, cols; /* the run config's terminal settings (struct spec) */
	int out_fd;  /* >= 0: stdin /dev/null, stdout and stderr this fd, no tty at all (the service) */
};
void reset_signals(void);
int child_env(const struct spec *s, const char *hostname, struct child_plan *p, int extra);
void add_env(struct child_plan *p, const char *name, const char *value);
pid_t spawn(const struct child_plan *p);
void run_image_init(const struct spec *s) __attribute__((noreturn));
int run_workload(const struct spec *s, const char *hostname);
void shutdown_all(void);

/* service.c */
#define SERVICE_PREFIX "service| "
struct service {
	struct child_plan p;
	pid_t pid, relay; /* 0 when not running */
	int rd, wr;       /* the relay pipe, held by PID 1 across restarts; rd -1 when output goes straight to the console */
	double started;   /* uptime of the last start */
	double due;       /* uptime of a pending restart of the service, of the relay; 0 = none */
	double relay_due;
	int delay;        /* seconds before the next restart */
};
void service_start(struct service *sv, const struct spec *s, const char *hostname);
void service_reaped(struct service *sv, pid_t pid, int status);
int service_wait_ms(const struct service *sv);
void service_tick(struct service *sv);
void service_stop(struct service *sv);
int restart_after(int status, double ran, int *delay);
int restart_policy_main(int argc, char **argv);
int relay_main(const char *prefix);
#endif
