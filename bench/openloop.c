/* An open-loop HTTP/1.1 load generator: request i is due at start + i/rate,
 * is sent then on an idle connection (a new one if none is idle), and its
 * latency counts from when it was due, so a server that stalls cannot hide
 * the requests it kept waiting (no coordinated omission, unlike wrk).
 * Debian has no wrk2; a generator in Python spent most of a CPU opening the
 * connections gunicorn's sync workers close after every response, so this
 * is C: bench/openloop.py compiles it with the system's cc and runs it.
 *
 *   openloop HOST PORT PATH RATE SECONDS [DUMP]
 * prints one line: sent ok errors p50 p90 p99 p999 max (ms) late_ms cpu_s
 * With DUMP, request i asks for PATH?n=i (so a server's trace can name it)
 * and DUMP gets a line per answered request: i due_s written_s latency_ms
 * (seconds on CLOCK_MONOTONIC, as Python's time.perf_counter on Linux).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 512
#define BUF 65536

typedef struct {
    int fd;
    int busy;      /* a request is on it */
    int connected;
    double due;    /* when its request was due */
    double wrote;  /* when its first byte was written */
    long id;       /* its request's number */
    char req[1024];
    size_t req_len;
    size_t sent;   /* bytes of the request written */
    char buf[BUF];
    size_t len;
} conn_t;

static conn_t conns[MAX_CONNS];
static int idle[MAX_CONNS], n_idle, n_open;
static double *lat, *dues, *wrotes;
static long *ids;
static long n_lat, errors, sent;
static long *pending; /* requests waiting for a connection (FIFO) */
static long p_head, p_tail;
static const char *path;
static char *host, *port;
static int numbered; /* PATH?n=i (with DUMP) */
static double t0, rate;
static struct sockaddr_in addr;
static int ep;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void watch(conn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &ev);
}

static void drop(conn_t *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    n_open--;
}

static conn_t *open_conn(void) {
    for (int i = 0; i < MAX_CONNS; i++) {
        conn_t *c = &conns[i];
        if (c->fd >= 0) continue;
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->connected = 0;
        c->len = 0;
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
            close(c->fd);
            c->fd = -1;
            return NULL;
        }
        n_open++;
        watch(c, EPOLLOUT | EPOLLIN, EPOLL_CTL_ADD);
        return c;
    }
    return NULL;
}

static void write_some(conn_t *c) {
    if (c->sent == 0) c->wrote = now();
    ssize_t n = write(c->fd, c->req + c->sent, c->req_len - c->sent);
    if (n > 0) c->sent += (size_t)n;
}

static void start(conn_t *c, long id) {
    c->busy = 1;
    c->id = id;
    c->due = t0 + id / rate;
    c->sent = 0;
    char number[32] = "";
    if (numbered) snprintf(number, sizeof number, "%cn=%ld", strchr(path, '?') ? '&' : '?', id);
    c->req_len = (size_t)snprintf(c->req, sizeof c->req, "GET %s%s HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
                                  path, number, host, port);
    sent++;
    if (c->connected) {
        write_some(c);
        if (c->sent < c->req_len) watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
    }
}

static void issue(long id) {
    if (n_idle > 0) {
        start(&conns[idle[--n_idle]], id);
        return;
    }
    if (n_open < MAX_CONNS) {
        conn_t *c = open_conn();
        if (c) {
            start(c, id);
            return;
        }
    }
    pending[p_tail++] = id;
}

static void done(conn_t *c, int ok, int reuse) {
    double t = now();
    if (ok) {
        ids[n_lat] = c->id;
        dues[n_lat] = c->due;
        wrotes[n_lat] = c->wrote;
        lat[n_lat++] = (t - c->due) * 1000.0;
    } else
        errors++;
    c->busy = 0;
    if (!reuse || !ok) drop(c);
    if (p_head < p_tail) { /* the oldest waiting request takes this turn */
        long id = pending[p_head++];
        if (reuse && ok) {
            start(c, id);
        } else {
            conn_t *n = open_conn();
            if (n) start(n, id); else errors++;
        }
    } else if (reuse && ok) {
        idle[n_idle++] = (int)(c - conns);
    }
}

/* Whether a whole response is in c->buf; sets *close when the server said so. */
static int complete(conn_t *c, int *close_after, size_t *used) {
    c->buf[c->len < BUF ? c->len : BUF - 1] = 0;
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return 0;
    size_t head = (size_t)(end - c->buf) + 4;
    long length = 0;
    *close_after = 0;
    for (char *p = c->buf; p < end; p++) {
        if (*p != '\n') continue;
        if (strncasecmp(p + 1, "content-length:", 15) == 0) length = atol(p + 16);
        if (strncasecmp(p + 1, "connection: close", 17) == 0) *close_after = 1;
    }
    if (c->len < head + (size_t)length) return 0;
    *used = head + (size_t)length;
    return 1;
}

static void event(conn_t *c, uint32_t events) {
    if (!c->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            done(c, 0, 0);
            return;
        }
        c->connected = 1;
    }
    if (c->busy && c->sent < c->req_len && (events & EPOLLOUT)) write_some(c);
    if (!c->busy || c->sent >= c->req_len) watch(c, EPOLLIN, EPOLL_CTL_MOD);
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t n = read(c->fd, c->buf + c->len, BUF - 1 - c->len);
            if (n > 0) {
                c->len += (size_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            /* closed (or reset) */
            if (c->busy) {
                int close_after;
                size_t used;
                done(c, complete(c, &close_after, &used), 0);
            } else {
                drop(c);
                for (int i = 0; i < n_idle; i++)
                    if (idle[i] == (int)(c - conns)) idle[i] = idle[--n_idle];
            }
            return;
        }
        int close_after;
        size_t used;
        if (c->busy && complete(c, &close_after, &used)) {
            memmove(c->buf, c->buf + used, c->len - used);
            c->len -= used;
            done(c, 1, !close_after);
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(double p) {
    if (!n_lat) return 0;
    long i = (long)(n_lat * p / 100.0);
    return lat[i < n_lat ? i : n_lat - 1];
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: openloop HOST PORT PATH RATE SECONDS [DUMP]\n");
        return 2;
    }
    host = argv[1];
    port = argv[2];
    path = argv[3];
    numbered = argc == 7;
    rate = atof(argv[4]);
    double seconds = atof(argv[5]);
    long total = (long)(rate * seconds);
    lat = calloc((size_t)total + 1, sizeof *lat);
    dues = calloc((size_t)total + 1, sizeof *dues);
    wrotes = calloc((size_t)total + 1, sizeof *wrotes);
    ids = calloc((size_t)total + 1, sizeof *ids);
    pending = calloc((size_t)total + 1, sizeof *pending);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    for (int i = 0; i < MAX_CONNS; i++) conns[i].fd = -1;
    ep = epoll_create1(0);
    int timer = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, timer, &tev);

    t0 = now() + 0.05;
    double late = 0;
    long next = 0;
    struct epoll_event evs[256];
    double deadline = t0 + seconds + 30;
    while ((next < total || sent - n_lat - errors > 0 || p_head < p_tail) && now() < deadline) {
        double t = now();
        while (next < total && t0 + next / rate <= t) {
            double due = t0 + next / rate;
            if (t - due > late) late = t - due;
            issue(next++);
        }
        if (next < total) {
            double due = t0 + next / rate;
            struct itimerspec its = {0};
            its.it_value.tv_sec = (time_t)due;
            its.it_value.tv_nsec = (long)((due - (double)(time_t)due) * 1e9);
            timerfd_settime(timer, TFD_TIMER_ABSTIME, &its, NULL);
        }
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                uint64_t x;
                if (read(timer, &x, sizeof x) < 0) { /* spurious */ }
                continue;
            }
            event((conn_t *)evs[i].data.ptr, evs[i].events);
        }
    }
    errors += sent - n_lat - errors; /* never answered before the deadline */
    if (numbered) {
        FILE *out = fopen(argv[6], "w");
        if (!out) {
            perror(argv[6]);
            return 1;
        }
        for (long i = 0; i < n_lat; i++)
            fprintf(out, "%ld %.6f %.6f %.4f\n", ids[i], dues[i], wrotes[i], lat[i]);
        fclose(out);
    }
    qsort(lat, (size_t)n_lat, sizeof *lat, cmp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    printf("%ld %ld %ld %.3f %.3f %.3f %.3f %.3f %.3f %.3f\n", sent, n_lat, errors, pct(50), pct(90),
           pct(99), pct(99.9), n_lat ? lat[n_lat - 1] : 0.0, late * 1000.0, cpu);
    return 0;
}
