/*
 * c-host: a Configuration Manager client in C over libmpagent_ffi.a (BSD sockets, a file as the
 * flash region). It registers with the MP, sends the heartbeat and a hardware inventory, and
 * prints the SMSID.
 *
 *   c-host --mp http://127.0.0.1:8080 --site-code PS1 --state DIR --name NAME [--fqdn FQDN]
 *          [--max-steps N] [--verbose] [--pump]
 *
 * --io-timeout-ms bounds the connect and every send and recv (default 10000).
 * --report-state TOPIC=STATE queues a state message (STATE of TOPIC) once the site gave an
 * SMSID (mpagent_report_state); it is delivered with the other reports.
 * --pump drives the agent through the sans-IO mpagent_pump (this program owns the socket and
 * the time) instead of mpagent_step over transport callbacks.
 *
 * For recording the replies the Cortex-M image replays (core/ffi/examples/cortex-m/record.sh):
 *   --clock T     the clock stands at UTC second T
 *   --seed S      random bytes from a xorshift seeded with S: a stand-in, never for a device
 *   --record DIR  the bytes of each connection's reply go to DIR/reply-N.bin (N = 0, 1, …)
 *
 * Exit codes: 0 registered and both reports delivered; 1 failure (the reason on stderr);
 * 2 usage; 3 registered but approval is pending (the site holds reports until approved).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "mpagent.h"

/* 64 KiB of "flash": two 4 KiB identity slots and a 56 KiB queue ring. */
#define FLASH_SIZE (16u * MPAGENT_FLASH_ERASE_SIZE)
/* The topic type of --report-state's state messages (an application's own topic). */
#define STATE_TOPIC_TYPE 9003u

struct host {
    int flash_fd;
    int sock;
    const char *state_dir;
    int delivered_ddr;
    int delivered_hinv;
    int verbose;
    FILE *policy_tmp;
    /* Inventory values, fixed for the run (every pass over the report must see the same). */
    char os_version[80];
    char machine[80];
    char cores[16];
    char memory_kb[32];
    char name[64];
    /* Recording (see the top of the file). */
    int64_t fixed_clock;
    uint64_t seed;
    const char *record_dir;
    int connections;
    FILE *record;
    uint32_t io_timeout_ms;
};

/* ---- flash region: a file with NOR rules (erase to 0xFF, writes only clear bits) ---- */

static int flash_read(void *user, uint32_t offset, uint8_t *buf, size_t len) {
    struct host *h = user;
    ssize_t n = pread(h->flash_fd, buf, len, offset);
    return n == (ssize_t)len ? 0 : -1;
}

static int flash_write(void *user, uint32_t offset, const uint8_t *buf, size_t len) {
    struct host *h = user;
    uint8_t old[256];
    while (len > 0) {
        size_t n = len < sizeof old ? len : sizeof old;
        if (pread(h->flash_fd, old, n, offset) != (ssize_t)n) return -1;
        for (size_t i = 0; i < n; i++) old[i] &= buf[i];
        if (pwrite(h->flash_fd, old, n, offset) != (ssize_t)n) return -1;
        offset += n;
        buf += n;
        len -= n;
    }
    return fdatasync(h->flash_fd) == 0 ? 0 : -1;
}

static int flash_erase(void *user, uint32_t from, uint32_t to) {
    struct host *h = user;
    uint8_t ff[MPAGENT_FLASH_ERASE_SIZE];
    memset(ff, 0xFF, sizeof ff);
    for (uint32_t at = from; at < to; at += sizeof ff)
        if (pwrite(h->flash_fd, ff, sizeof ff, at) != (ssize_t)sizeof ff) return -1;
    return fdatasync(h->flash_fd) == 0 ? 0 : -1;
}

static int open_flash(struct host *h) {
    char path[4096];
    snprintf(path, sizeof path, "%s/flash.bin", h->state_dir);
    h->flash_fd = open(path, O_RDWR | O_CREAT, 0600);
    if (h->flash_fd < 0) {
        fprintf(stderr, "c-host: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(h->flash_fd, &st) != 0) return -1;
    if (st.st_size == 0) {
        /* A new device: its flash is erased. */
        if (flash_erase(h, 0, FLASH_SIZE) != 0) return -1;
    } else if (st.st_size != FLASH_SIZE) {
        fprintf(stderr, "c-host: %s is %lld bytes, not the %u of the flash region\n", path,
                (long long)st.st_size, FLASH_SIZE);
        return -1;
    }
    return 0;
}

/* ---- clock and RNG ---- */

static int64_t now(void *user) {
    struct host *h = user;
    return h->fixed_clock ? h->fixed_clock : (int64_t)time(NULL);
}

/* The same xorshift the Cortex-M image uses: only so that a recording can be replayed. */
static uint64_t xorshift(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int random_bytes(void *user, uint8_t *buf, size_t len) {
    struct host *h = user;
    if (h->seed) {
        for (size_t i = 0; i < len; i += 8) {
            uint64_t w = xorshift(&h->seed);
            for (size_t j = 0; j < 8 && i + j < len; j++) buf[i + j] = (uint8_t)(w >> (8 * j));
        }
        return 0;
    }
    while (len > 0) {
        ssize_t n = getrandom(buf, len, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* ---- transport: one TCP connection per exchange ---- */

static int net_connect(void *user, const char *host, uint16_t port, int tls, uint32_t timeout_ms) {
    struct host *h = user;
    if (tls) {
        fprintf(stderr, "c-host: an HTTPS MP needs a TLS stack; this example speaks HTTP only\n");
        return -1;
    }
    char service[8];
    snprintf(service, sizeof service, "%u", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "c-host: cannot resolve %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "c-host: cannot connect to %s:%u: %s\n", host, port, strerror(errno));
        return -1;
    }
    h->sock = fd;
    if (h->record_dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/reply-%d.bin", h->record_dir, h->connections);
        h->record = fopen(path, "wb");
        if (h->record == NULL) return -1;
    }
    h->connections++;
    return 0;
}

static intptr_t net_send(void *user, const uint8_t *buf, size_t len) {
    struct host *h = user;
    ssize_t n;
    do n = send(h->sock, buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
}

static intptr_t net_recv(void *user, uint8_t *buf, size_t len) {
    struct host *h = user;
    ssize_t n;
    do n = recv(h->sock, buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n > 0 && h->record) fwrite(buf, 1, (size_t)n, h->record);
    return n;
}

static void net_close(void *user) {
    struct host *h = user;
    if (h->sock >= 0) close(h->sock);
    h->sock = -1;
    if (h->record) fclose(h->record);
    h->record = NULL;
}

/* ---- hardware inventory: one instance per call, from values fixed at start ---- */

static int inventory_item(void *user, size_t index, mpagent_instance *item) {
    struct host *h = user;
    static mpagent_property props[4];
    switch (index) {
    case 0:
        props[0] = (mpagent_property){"Name", h->name};
        props[1] = (mpagent_property){"Manufacturer", "mpagent"};
        props[2] = (mpagent_property){"Model", "c-host"};
        props[3] = (mpagent_property){"TotalPhysicalMemory", h->memory_kb};
        item->class_name = "Win32_ComputerSystem";
        item->property_count = 4;
        break;
    case 1:
        props[0] = (mpagent_property){"Caption", "Linux"};
        props[1] = (mpagent_property){"Version", h->os_version};
        item->class_name = "Win32_OperatingSystem";
        item->property_count = 2;
        break;
    case 2:
        props[0] = (mpagent_property){"Name", h->machine};
        props[1] = (mpagent_property){"NumberOfCores", h->cores};
        item->class_name = "Win32_Processor";
        item->property_count = 2;
        break;
    default:
        return 0;
    }
    item->namespace_name = NULL; /* root\cimv2 */
    item->properties = props;
    return 1;
}

/* ---- policy: bodies kept as files in the state directory ---- */

static void policy_path(const struct host *h, const char *id, const char *version, char *out,
                        size_t len) {
    snprintf(out, len, "%s/policy-", h->state_dir);
    size_t at = strlen(out);
    for (const char *p = id; *p && at + 1 < len; p++)
        out[at++] = (*p == '/' || *p == '{' || *p == '}') ? '_' : *p;
    out[at] = '\0';
    snprintf(out + at, len - at, ".%s.xml", version);
}

static int policy_applied(void *user, const char *id, const char *version) {
    char path[4096];
    policy_path(user, id, version, path, sizeof path);
    return access(path, F_OK) == 0;
}

static int policy_body(void *user, const uint8_t *bytes, size_t len) {
    struct host *h = user;
    if (h->policy_tmp == NULL) {
        char path[4096];
        snprintf(path, sizeof path, "%s/policy.tmp", h->state_dir);
        h->policy_tmp = fopen(path, "wb");
        if (h->policy_tmp == NULL) return -1;
    }
    return fwrite(bytes, 1, len, h->policy_tmp) == len ? 0 : -1;
}

static int policy_done(void *user, const char *id, const char *version, size_t len, int keep) {
    struct host *h = user;
    char tmp[4096], path[4096];
    snprintf(tmp, sizeof tmp, "%s/policy.tmp", h->state_dir);
    if (h->policy_tmp != NULL) fclose(h->policy_tmp);
    h->policy_tmp = NULL;
    if (!keep) {
        unlink(tmp);
        return 0;
    }
    policy_path(h, id, version, path, sizeof path);
    if (len == 0) {
        FILE *f = fopen(path, "wb");
        if (f) fclose(f);
        return f != NULL;
    }
    return rename(tmp, path) == 0;
}

/* The context is a static: its size is known at compile time (MPAGENT_CONTEXT_SIZE). */
static mpagent_context agent;

/* ---- log ---- */

static void on_event(void *user, int event, const char *text) {
    struct host *h = user;
    if (event == MPAGENT_EVENT_DELIVERED) {
        if (strstr(text, "MP_DdrEndpoint")) h->delivered_ddr = 1;
        if (strstr(text, "MP_HinvEndpoint")) h->delivered_hinv = 1;
    }
    if (h->verbose || event == MPAGENT_EVENT_REGISTRATION_FAILED ||
        event == MPAGENT_EVENT_DELIVERY_FAILED || event == MPAGENT_EVENT_REFUSED)
        fprintf(stderr, "c-host: %s\n", text);
}

static void usage(void) {
    fprintf(stderr, "usage: c-host --mp URL --site-code CODE --state DIR --name NAME [--fqdn FQDN] "
                    "[--max-steps N] [--verbose] [--pump] [--io-timeout-ms MS] [--clock T] [--seed S] "
                    "[--record DIR] [--report-state TOPIC=STATE]\n");
}

static int fail(mpagent_context *ctx, const char *what, int rc) {
    char why[256] = "";
    if (ctx != NULL) mpagent_last_error(ctx, why, sizeof why);
    fprintf(stderr, "c-host: %s: %s%s%s\n", what, mpagent_strerror(rc), why[0] ? ": " : "", why);
    return 1;
}


/* The agent is idle until `until`: report and exit (a device would sleep and step again). */
static int finish(const struct host *h, int64_t until) {
    int st = mpagent_registration_state(&agent);
    char smsid[MPAGENT_SMSID_LEN];
    int have = mpagent_smsid(&agent, smsid, sizeof smsid) == MPAGENT_OK;
    mpagent_counts counts = {0};
    mpagent_get_counts(&agent, &counts);
    fprintf(stderr, "c-host: idle until %lld; %u queued, %u delivered, %u in the queue\n",
            (long long)until, counts.queued, counts.delivered, counts.in_queue);
    if (st == MPAGENT_REGISTERED && have && h->delivered_ddr && h->delivered_hinv) {
        printf("SMSID %s\n", smsid);
        return 0;
    }
    if (st == MPAGENT_PENDING && have) {
        printf("SMSID %s (approval pending)\n", smsid);
        return 3;
    }
    fprintf(stderr, "c-host: the agent is idle and %s (heartbeat %s, inventory %s)\n",
            st == MPAGENT_REGISTERED ? "registered" : "not registered",
            h->delivered_ddr ? "delivered" : "not delivered",
            h->delivered_hinv ? "delivered" : "not delivered");
    return 1;
}

/* The pump (sans-IO) variant: this loop owns the socket and the time; the library says what it
 * wants next. The transport callbacks are not used. */
static int run_pump(struct host *h, unsigned max_steps) {
    static uint8_t rx[1536];
    const uint8_t *pending = NULL;
    size_t pending_len = 0;
    mpagent_pump_in in = {.now = now(h), .event = MPAGENT_PUMP_NONE};
    unsigned steps = 0;
    for (;;) {
        mpagent_pump_out out;
        int rc = mpagent_pump(&agent, &in, &out);
        if (rc != MPAGENT_OK) return fail(&agent, "mpagent_pump", rc);
        if (in.event == MPAGENT_PUMP_RECEIVED && out.consumed < in.rx_len) {
            pending = in.rx + out.consumed;
            pending_len = in.rx_len - out.consumed;
        } else if (in.event == MPAGENT_PUMP_RECEIVED) {
            pending_len = 0;
        }
        if (out.close) net_close(h);
        in = (mpagent_pump_in){.now = now(h), .event = MPAGENT_PUMP_NONE};
        switch (out.want) {
        case MPAGENT_WANT_CONNECT:
            pending_len = 0;
            in.event = net_connect(h, out.host, out.port, out.tls, h->io_timeout_ms) == 0
                           ? MPAGENT_PUMP_CONNECTED
                           : MPAGENT_PUMP_CONNECT_FAILED;
            break;
        case MPAGENT_WANT_SEND: {
            intptr_t n = net_send(h, out.tx, out.tx_len);
            in.event = n > 0 ? MPAGENT_PUMP_SENT : MPAGENT_PUMP_IO_FAILED;
            in.sent = n > 0 ? (size_t)n : 0;
            break;
        }
        case MPAGENT_WANT_RECV: {
            if (pending_len > 0) {
                in.event = MPAGENT_PUMP_RECEIVED;
                in.rx = pending;
                in.rx_len = pending_len;
                break;
            }
            intptr_t n = net_recv(h, rx, sizeof rx);
            if (n > 0) {
                in.event = MPAGENT_PUMP_RECEIVED;
                in.rx = rx;
                in.rx_len = (size_t)n;
            } else if (n == 0) {
                in.event = MPAGENT_PUMP_PEER_CLOSED;
            } else {
                /* SO_RCVTIMEO expired: the exchange's deadline. */
                in.event = (errno == EAGAIN || errno == EWOULDBLOCK) ? MPAGENT_PUMP_TIMEOUT
                                                                     : MPAGENT_PUMP_IO_FAILED;
            }
            break;
        }
        case MPAGENT_WANT_STEP:
            if (++steps >= max_steps) {
                fprintf(stderr, "c-host: still busy after %u steps\n", max_steps);
                return 1;
            }
            break;
        case MPAGENT_WANT_SLEEP:
            return finish(h, out.until);
        default:
            fprintf(stderr, "c-host: mpagent_pump wants %d\n", out.want);
            return 1;
        }
    }
}

int main(int argc, char **argv) {
    const char *mp = NULL, *site = NULL, *state = NULL, *name = NULL, *fqdn = NULL;
    const char *report_state = NULL;
    unsigned max_steps = 64;
    int pump = 0;
    struct host h = {.flash_fd = -1, .sock = -1, .io_timeout_ms = 10000};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--verbose") == 0) {
            h.verbose = 1;
            continue;
        }
        if (strcmp(a, "--pump") == 0) {
            pump = 1;
            continue;
        }
        if (v == NULL) {
            usage();
            return 2;
        }
        if (strcmp(a, "--mp") == 0) mp = v;
        else if (strcmp(a, "--site-code") == 0) site = v;
        else if (strcmp(a, "--state") == 0) state = v;
        else if (strcmp(a, "--name") == 0) name = v;
        else if (strcmp(a, "--fqdn") == 0) fqdn = v;
        else if (strcmp(a, "--max-steps") == 0) max_steps = (unsigned)strtoul(v, NULL, 10);
        else if (strcmp(a, "--clock") == 0) h.fixed_clock = strtoll(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0) h.seed = strtoull(v, NULL, 0);
        else if (strcmp(a, "--record") == 0) h.record_dir = v;
        else if (strcmp(a, "--io-timeout-ms") == 0) h.io_timeout_ms = (uint32_t)strtoul(v, NULL, 10);
        else if (strcmp(a, "--report-state") == 0) report_state = v;
        else {
            usage();
            return 2;
        }
        i++;
    }
    if (!mp || !site || !state || !name) {
        usage();
        return 2;
    }
    char fqdn_buf[300];
    if (fqdn == NULL) {
        snprintf(fqdn_buf, sizeof fqdn_buf, "%s.mpagent.test", name);
        for (char *p = fqdn_buf; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        fqdn = fqdn_buf;
    }
    h.state_dir = state;
    if (mkdir(state, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "c-host: cannot create %s: %s\n", state, strerror(errno));
        return 1;
    }
    if (open_flash(&h) != 0) return 1;

    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(h.os_version, sizeof h.os_version, "%s", u.release);
        snprintf(h.machine, sizeof h.machine, "%s", u.machine);
    }
    snprintf(h.cores, sizeof h.cores, "%ld", sysconf(_SC_NPROCESSORS_ONLN));
    snprintf(h.memory_kb, sizeof h.memory_kb, "%lld",
             (long long)sysconf(_SC_PHYS_PAGES) * (long long)sysconf(_SC_PAGESIZE));
    snprintf(h.name, sizeof h.name, "%s", name);

    mpagent_config config = {
        .site_code = site,
        .site_mode = strncmp(mp, "https:", 6) == 0 ? MPAGENT_SITE_NATIVE : MPAGENT_SITE_MIXED,
        .mp_url = mp,
        .site_generation = MPAGENT_SITE_CURRENT,
        .netbios_name = name,
        .fqdn = fqdn,
        .ip_address = "127.0.0.1",
        .mac_address = NULL,
    };
    mpagent_callbacks cb = {
        .user = &h,
        .flash_size = FLASH_SIZE,
        .flash_read = flash_read,
        .flash_write = flash_write,
        .flash_erase = flash_erase,
        .now = now,
        .random = random_bytes,
        .connect = net_connect,
        .send = net_send,
        .recv = net_recv,
        .close = net_close,
        .io_timeout_ms = h.io_timeout_ms,
        .inventory_item = inventory_item,
        .policy_applied = policy_applied,
        .policy_body = policy_body,
        .policy_done = policy_done,
        .event = on_event,
    };

    int rc = mpagent_init(&agent, sizeof agent, &config, &cb);
    if (rc != MPAGENT_OK) return fail(&agent, "mpagent_init", rc);
    int created = 0;
    rc = mpagent_identity(&agent, &created);
    if (rc != MPAGENT_OK) return fail(&agent, "mpagent_identity", rc);
    fprintf(stderr, "c-host: identity %s\n", created ? "made and saved" : "loaded");

    if (pump) return run_pump(&h, max_steps);
    for (unsigned step = 0; step < max_steps; step++) {
        mpagent_step_result r;
        rc = mpagent_step(&agent, &r);
        if (rc != MPAGENT_OK) return fail(&agent, "mpagent_step", rc);
        if (r.action != MPAGENT_ACTION_IDLE) continue;
        if (report_state != NULL) {
            /* --report-state TOPIC=STATE: queued once the site gave an SMSID, then delivered. */
            char topic[MPAGENT_MAX_STATE_TOPIC + 1];
            const char *eq = strchr(report_state, '=');
            size_t n = eq ? (size_t)(eq - report_state) : 0;
            if (eq == NULL || n == 0 || n > MPAGENT_MAX_STATE_TOPIC) {
                fprintf(stderr, "c-host: --report-state %s: give TOPIC=STATE\n", report_state);
                return 2;
            }
            memcpy(topic, report_state, n);
            topic[n] = '\0';
            rc = mpagent_report_state(&agent, topic, STATE_TOPIC_TYPE,
                                      (uint32_t)strtoul(eq + 1, NULL, 10));
            if (rc != MPAGENT_OK) return fail(&agent, "mpagent_report_state", rc);
            fprintf(stderr, "c-host: state of %s queued\n", topic);
            report_state = NULL;
            continue;
        }
        /* Nothing to do before r.until: a device sleeps; this program checks and exits. */
        return finish(&h, r.until);
    }
    fprintf(stderr, "c-host: still busy after %u steps\n", max_steps);
    return 1;
}
