/*
 * loadgen: an independent, minimal closed-loop load generator for line protocols, to check that
 * `jam bench` drives a server at least as hard as a plain C client would.
 *
 * Single thread, level-triggered epoll (each connection is always read; written while requests
 * are owed and the socket is full). Each connection keeps PIPELINE "TIME\r\n" requests in
 * flight: every reply line (ending in \n) read is answered with one new request, the requests owed
 * for one read going out in one write. Replies are counted, not checked.
 *
 *   gcc -O2 -o loadgen loadgen.c && ./loadgen 127.0.0.1 7105 50 16 5
 *
 * Prints: requests=<replies> seconds=<s> rps=<r> cpu_s=<user+sys> cpu_share=<cpu_s/seconds>
 * errors=<connections lost>
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define REQ "TIME\r\n"
#define REQ_LEN 6
#define OUT_REQS 4096

struct conn {
    uint64_t owed; /* request bytes not yet written */
    int connected;
    uint32_t events; /* what epoll is asked for */
};

static char inbuf[64 * 1024];
static char outbuf[OUT_REQS * REQ_LEN];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Writes what the socket takes. -1: connection dead. */
static int flush_owed(int fd, struct conn *c) {
    while (c->owed > 0) {
        size_t skip = (REQ_LEN - c->owed % REQ_LEN) % REQ_LEN;
        size_t n = c->owed < sizeof outbuf - skip ? c->owed : sizeof outbuf - skip;
        ssize_t w = write(fd, outbuf + skip, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        c->owed -= (uint64_t)w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT CONNECTIONS PIPELINE SECONDS\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    int nconn = atoi(argv[3]);
    long pipeline = atol(argv[4]);
    double seconds = atof(argv[5]);
    if (nconn < 1 || pipeline < 1 || seconds <= 0) {
        fprintf(stderr, "loadgen: connections, pipeline and seconds must be positive\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    for (int i = 0; i < OUT_REQS; i++)
        memcpy(outbuf + i * REQ_LEN, REQ, REQ_LEN);

    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: HOST must be an IPv4 address\n");
        return 2;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("epoll_create1");
        return 1;
    }
    /* fd -> connection; descriptors are small integers. */
    size_t max_fd = (size_t)nconn + 64;
    struct conn *conns = calloc(max_fd, sizeof *conns);
    if (!conns) {
        perror("calloc");
        return 1;
    }

    double cpu0 = cpu_s();
    double t0 = now_s();
    double deadline = t0 + seconds;
    int alive = 0;
    long errors = 0;
    for (int i = 0; i < nconn; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || (size_t)fd >= max_fd) {
            perror("socket");
            return 1;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
            perror("connect");
            errors++;
            close(fd);
            continue;
        }
        conns[fd].owed = (uint64_t)pipeline * REQ_LEN;
        conns[fd].events = EPOLLOUT;
        struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        alive++;
    }

    uint64_t replies = 0;
    static struct epoll_event events[1024];
    while (alive > 0) {
        double left = deadline - now_s();
        if (left <= 0)
            break;
        int timeout_ms = (int)(left * 1000) + 1;
        int n = epoll_wait(ep, events, 1024, timeout_ms < 100 ? timeout_ms : 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            struct conn *c = &conns[fd];
            uint32_t e = events[i].events;
            int dead = 0;
            if (e & EPOLLERR)
                dead = 1;
            if (!dead && (e & EPOLLOUT)) {
                /* Connected (first time), or the socket has room again. */
                c->connected = 1;
                if (flush_owed(fd, c) < 0)
                    dead = 1;
            }
            if (!dead && (e & (EPOLLIN | EPOLLHUP))) {
                ssize_t r = read(fd, inbuf, sizeof inbuf);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    dead = 1;
                } else if (r > 0) {
                    uint64_t lines = 0;
                    const char *p = inbuf, *end = inbuf + r;
                    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
                        lines++;
                        p++;
                    }
                    replies += lines;
                    c->owed += lines * REQ_LEN;
                    if (flush_owed(fd, c) < 0)
                        dead = 1;
                }
            }
            if (!dead && c->connected) {
                /* Read always; wait for room only while requests are owed. */
                uint32_t want = EPOLLIN | (c->owed > 0 ? EPOLLOUT : 0);
                if (want != c->events) {
                    struct epoll_event ev = {.events = want, .data.fd = fd};
                    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
                    c->events = want;
                }
            }
            if (dead) {
                errors++;
                alive--;
                close(fd);
            }
        }
    }
    double elapsed = now_s() - t0;
    double cpu = cpu_s() - cpu0;
    printf("requests=%llu seconds=%.3f rps=%.0f cpu_s=%.2f cpu_share=%.2f errors=%ld\n",
           (unsigned long long)replies, elapsed, (double)replies / elapsed, cpu, cpu / elapsed,
           errors);
    return 0;
}
