/*
 * zkmq-clock: steps a process's wall clock by an offset it rereads from a file,
 * for the clock-skew fault. cluster/build-rootfs.sh compiles it into the images
 * as /usr/lib/zkmq/zkmq-clock.so; cluster/zk-start.sh preloads it into
 * ZooKeeper's JVM when the cluster is started for clock faults, with
 * ZKMQ_CLOCK_FILE naming the file; the fault writes the offset there, in
 * nanoseconds, as decimal text ("0" puts the clock right).
 *
 * Only CLOCK_REALTIME (and its coarse variant, gettimeofday, time) moves, as
 * with an NTP step: the monotonic clocks, by which ZooKeeper times sessions and
 * elections, stay true. Debian's libfaketime does the same, but takes a lock and
 * changes the signal mask on its paths and wraps every timed wait: measured
 * here, it made ZooKeeper twenty times slower (71 against 1,434 messages/s).
 * This shim takes no lock: a call reads the offset from memory, and at most one
 * thread every 200 ms rereads the file.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RECHECK_NS 200000000LL
#define NS_PER_S 1000000000LL

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);
typedef int (*gettimeofday_fn)(struct timeval *, void *);

static _Atomic(clock_gettime_fn) real_clock_gettime;
static _Atomic(gettimeofday_fn) real_gettimeofday;
static _Atomic long long offset_ns;
static _Atomic long long next_check_ns;
static const char *offset_file;

static clock_gettime_fn clock_gettime_next(void) {
    clock_gettime_fn f = atomic_load_explicit(&real_clock_gettime, memory_order_relaxed);
    if (f == NULL) {
        f = (clock_gettime_fn)dlsym(RTLD_NEXT, "clock_gettime");
        atomic_store_explicit(&real_clock_gettime, f, memory_order_relaxed);
    }
    return f;
}

__attribute__((constructor)) static void zkmq_clock_init(void) {
    offset_file = getenv("ZKMQ_CLOCK_FILE");
    clock_gettime_next();
    atomic_store(&real_gettimeofday, (gettimeofday_fn)dlsym(RTLD_NEXT, "gettimeofday"));
}

/* The offset, reread from the file by one thread at most every RECHECK_NS. A
 * file being rewritten (empty, or not a number) leaves the last offset. */
static long long current_offset(void) {
    if (offset_file == NULL) return 0;
    struct timespec mono;
    if (clock_gettime_next()(CLOCK_MONOTONIC, &mono) == 0) {
        long long now = mono.tv_sec * NS_PER_S + mono.tv_nsec;
        long long next = atomic_load_explicit(&next_check_ns, memory_order_relaxed);
        if (now >= next &&
            atomic_compare_exchange_strong(&next_check_ns, &next, now + RECHECK_NS)) {
            int fd = open(offset_file, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) {
                char text[32];
                ssize_t n = read(fd, text, sizeof text - 1);
                close(fd);
                if (n > 0) {
                    text[n] = '\0';
                    char *end;
                    long long value = strtoll(text, &end, 10);
                    if (end != text) atomic_store(&offset_ns, value);
                }
            }
        }
    }
    return atomic_load_explicit(&offset_ns, memory_order_relaxed);
}

static void shift(struct timespec *ts, long long by) {
    long long ns = ts->tv_nsec + by % NS_PER_S;
    ts->tv_sec += by / NS_PER_S + ns / NS_PER_S;
    ns %= NS_PER_S;
    if (ns < 0) {
        ns += NS_PER_S;
        ts->tv_sec -= 1;
    }
    ts->tv_nsec = ns;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    int result = clock_gettime_next()(id, ts);
    if (result == 0 && (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)) {
        long long by = current_offset();
        if (by != 0) shift(ts, by);
    }
    return result;
}

int gettimeofday(struct timeval *tv, void *tz) {
    gettimeofday_fn real = atomic_load(&real_gettimeofday);
    if (real == NULL) {
        real = (gettimeofday_fn)dlsym(RTLD_NEXT, "gettimeofday");
        atomic_store(&real_gettimeofday, real);
    }
    int result = real(tv, tz);
    if (result == 0) {
        long long by = current_offset();
        if (by != 0) {
            struct timespec ts = { tv->tv_sec, tv->tv_usec * 1000L };
            shift(&ts, by);
            tv->tv_sec = ts.tv_sec;
            tv->tv_usec = ts.tv_nsec / 1000L;
        }
    }
    return result;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (out != NULL) *out = ts.tv_sec;
    return ts.tv_sec;
}
