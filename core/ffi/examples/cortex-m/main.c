/*
 * The C API on a Cortex-M4: a C `main` linked with the thumbv7em libmpagent_ffi.a by
 * arm-none-eabi-gcc, run under QEMU mps2-an386 with semihosting for output. It makes an identity
 * (P-256 key and self-signed certificate, saved in a RAM stand-in for NOR flash), then runs the
 * agent through the sans-IO pump (mpagent_pump): the registration request is built and signed on
 * the M4 and handed out in pieces to "send"; the replies handed in are the MP emulator's,
 * recorded by record.sh (replies.h). Heartbeat, inventory and status are queued on the flash,
 * sent and acknowledged the same way. No transport callback exists: the loop below is the
 * network.
 *
 * Exit (semihosting): 0 when the agent is registered with the recorded SMSID's site and the
 * three reports were delivered; 1 otherwise, with the reason on the console.
 */
#include <stdint.h>
#include <string.h>

#include "mpagent.h"
#include "replies.h"

/* ---- semihosting ---- */

static int semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void put(const char *s) { semihost(0x04 /* SYS_WRITE0 */, s); }

static void put_u(uint64_t v) {
    char b[24];
    int i = sizeof b - 1;
    b[i] = '\0';
    do b[--i] = (char)('0' + v % 10);
    while ((v /= 10) != 0 && i > 0);
    put(&b[i]);
}

static void __attribute__((noreturn)) stop(int ok) {
    /* ADP_Stopped_ApplicationExit (QEMU exits 0) or ADP_Stopped_RunTimeErrorUnknown (1). */
    semihost(0x18 /* SYS_EXIT */, (const void *)(uintptr_t)(ok ? 0x20026 : 0x20023));
    for (;;) __asm__ volatile("wfi");
}

/* ---- the device: flash stand-in, clock, stand-in RNG, recorded transport ---- */

#define FLASH_SIZE (16u * MPAGENT_FLASH_ERASE_SIZE)
static uint8_t flash[FLASH_SIZE];

static int flash_read(void *user, uint32_t offset, uint8_t *buf, size_t len) {
    (void)user;
    memcpy(buf, &flash[offset], len);
    return 0;
}

static int flash_write(void *user, uint32_t offset, const uint8_t *buf, size_t len) {
    (void)user;
    for (size_t i = 0; i < len; i++) flash[offset + i] &= buf[i]; /* NOR: bits only clear */
    return 0;
}

static int flash_erase(void *user, uint32_t from, uint32_t to) {
    (void)user;
    memset(&flash[from], 0xFF, to - from);
    return 0;
}

static int64_t now(void *user) {
    (void)user;
    return REC_CLOCK;
}

/* A stand-in, not a generator: a device uses its TRNG. The seed is the recording's, so that the
 * requests are the ones the recorded replies answer. */
static uint64_t seed = REC_SEED;
static int random_bytes(void *user, uint8_t *buf, size_t len) {
    (void)user;
    for (size_t i = 0; i < len; i += 8) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        for (size_t j = 0; j < 8 && i + j < len; j++) buf[i + j] = (uint8_t)(seed >> (8 * j));
    }
    return 0;
}

/* The recorded exchanges, one per connection the agent asks for. */
static int connection = -1;
static size_t reply_at;
static size_t sent;

static const mpagent_property board_props[] = {
    {"Name", "CM4-C-1"}, {"Manufacturer", "ARM"}, {"Model", "MPS2 AN386 (QEMU)"}};
static int inventory_item(void *user, size_t index, mpagent_instance *item) {
    (void)user;
    if (index > 0) return 0;
    item->class_name = "Win32_ComputerSystem";
    item->namespace_name = NULL;
    item->properties = board_props;
    item->property_count = sizeof board_props / sizeof board_props[0];
    return 1;
}

static unsigned delivered;
static void on_event(void *user, int event, const char *text) {
    (void)user;
    if (event == MPAGENT_EVENT_DELIVERED) delivered++;
    put("cm4: ");
    put(text);
    put("\n");
}

static int failed(mpagent_context *ctx, const char *what, int rc) {
    char why[200] = "";
    mpagent_last_error(ctx, why, sizeof why);
    put("cm4: ");
    put(what);
    put(": ");
    put(mpagent_strerror(rc));
    if (why[0]) {
        put(": ");
        put(why);
    }
    put("\n");
    stop(0);
}

static mpagent_context agent;

/* Stack high-water mark: the start-up code paints the free RAM, this finds the deepest word the
 * run wrote. */
extern uint32_t _bss_end, _stack_top;
#define PAINT 0xA5A5A5A5u
static uint32_t stack_used(void) {
    const uint32_t *p = &_bss_end;
    while (p < &_stack_top && *p == PAINT) p++;
    return (uint32_t)((uintptr_t)&_stack_top - (uintptr_t)p);
}

int main(void) {
    mpagent_config config = {
        .site_code = "PS1",
        .site_mode = MPAGENT_SITE_MIXED,
        .mp_url = "http://127.0.0.1:18480",
        .site_generation = MPAGENT_SITE_CURRENT,
        .netbios_name = "CM4-C-1",
        .fqdn = "cm4-c-1.mpagent.test",
        .ip_address = "127.0.0.1",
        .mac_address = NULL,
    };
    mpagent_callbacks cb = {
        .flash_size = FLASH_SIZE,
        .flash_read = flash_read,
        .flash_write = flash_write,
        .flash_erase = flash_erase,
        .now = now,
        .random = random_bytes,
        .inventory_item = inventory_item,
        .event = on_event,
    };
    memset(flash, 0xFF, sizeof flash); /* a new device: its flash is erased */
    put("cm4: context ");
    put_u(mpagent_context_size());
    put(" bytes\n");
    int rc = mpagent_init(&agent, sizeof agent, &config, &cb);
    if (rc != MPAGENT_OK) failed(&agent, "mpagent_init", rc);
    int created = 0;
    rc = mpagent_identity(&agent, &created);
    if (rc != MPAGENT_OK) failed(&agent, "mpagent_identity", rc);
    put(created ? "cm4: identity made and saved\n" : "cm4: identity loaded\n");
    /* The pump: the agent says what it wants, this loop answers from the recording. */
    int64_t until = 0;
    mpagent_pump_in in = {.now = REC_CLOCK, .event = MPAGENT_PUMP_NONE};
    for (unsigned calls = 0; until == 0; calls++) {
        mpagent_pump_out out;
        rc = mpagent_pump(&agent, &in, &out);
        if (rc != MPAGENT_OK) failed(&agent, "mpagent_pump", rc);
        if (in.event == MPAGENT_PUMP_RECEIVED) reply_at += out.consumed;
        if (calls > 10000) {
            put("cm4: FAILED: the pump did not come to rest\n");
            stop(0);
        }
        in = (mpagent_pump_in){.now = REC_CLOCK, .event = MPAGENT_PUMP_NONE};
        switch (out.want) {
        case MPAGENT_WANT_CONNECT:
            if (connection + 1 < REC_REPLIES) {
                connection++;
                reply_at = 0;
                in.event = MPAGENT_PUMP_CONNECTED;
            } else {
                in.event = MPAGENT_PUMP_CONNECT_FAILED; /* nothing recorded for it */
            }
            break;
        case MPAGENT_WANT_SEND:
            sent += out.tx_len;
            in.event = MPAGENT_PUMP_SENT;
            in.sent = out.tx_len;
            break;
        case MPAGENT_WANT_RECV:
            if (reply_at < rec_reply_len[connection]) {
                in.event = MPAGENT_PUMP_RECEIVED;
                in.rx = rec_reply[connection] + reply_at;
                in.rx_len = rec_reply_len[connection] - reply_at;
            } else {
                in.event = MPAGENT_PUMP_PEER_CLOSED;
            }
            break;
        case MPAGENT_WANT_STEP:
            break;
        case MPAGENT_WANT_SLEEP:
            until = out.until;
            break;
        }
    }
    char smsid[MPAGENT_SMSID_LEN];
    int registered = mpagent_registration_state(&agent) == MPAGENT_REGISTERED &&
                     mpagent_smsid(&agent, smsid, sizeof smsid) == MPAGENT_OK;
    put("cm4: ");
    put_u((uint64_t)connection + 1);
    put(" exchanges, ");
    put_u(sent);
    put(" bytes sent, ");
    put_u(delivered);
    put(" delivered; idle until ");
    put_u((uint64_t)until);
    put("\ncm4: stack used ");
    put_u(stack_used());
    put(" bytes\n");
    if (!registered || delivered != 3) {
        put("cm4: FAILED: not registered with three reports delivered\n");
        stop(0);
    }
    put("cm4: registered as ");
    put(smsid);
    put("\n");
    stop(1);
}

/* ---- start-up: vector table, .data and .bss, the FPU (the library is built hard-float) ---- */

extern uint32_t _data_start, _data_end, _data_load, _bss_start;

void __attribute__((noreturn)) reset_handler(void) {
    uint32_t *src = &_data_load;
    for (uint32_t *dst = &_data_start; dst < &_data_end;) *dst++ = *src++;
    for (uint32_t *dst = &_bss_start; dst < &_bss_end;) *dst++ = 0;
    /* Paint the free RAM up to just below this function's own frame. */
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = &_bss_end; p < sp - 16;) *p++ = PAINT;
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20; /* CPACR: CP10, CP11 full access */
    __asm__ volatile("dsb\n isb");
    main();
    stop(0);
}

static void __attribute__((noreturn)) fault_handler(void) {
    put("cm4: FAULT\n");
    stop(0);
}

__attribute__((section(".vectors"), used)) static const void *const vectors[16] = {
    &_stack_top, (const void *)reset_handler, (const void *)fault_handler,
    (const void *)fault_handler, (const void *)fault_handler, (const void *)fault_handler,
    (const void *)fault_handler,
};
