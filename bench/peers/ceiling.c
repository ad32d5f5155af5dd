/*
 * ceiling: the machine's ceiling for jam's shape of work.
 *
 * A single-threaded, level-triggered epoll server that answers every line (ending in \n) with the
 * constant 14-byte reply "JAM 00:00:00\r\n". The replies owed for one read go out in one write.
 * A "QUIT" line (any case, optional \r) closes the connection after the replies before it; EOF
 * closes it too. No clock, no parsing beyond that: whatever a real server costs above this is the
 * price of its features (and its language, runtime, logging...).
 *
 * Per-connection state is a few bytes (no buffers): the reply bytes still owed and the first bytes
 * of the current, unfinished line. While replies are owed and the socket is full, the connection
 * waits for EPOLLOUT and is not read (backpressure).
 *
 *   gcc -O2 -o ceiling ceiling.c && ./ceiling 7105
 */
#define _GNU_SOURCE
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
#include <unistd.h>

#define REPLY "JAM 00:00:00\r\n"
#define REPLY_LEN 14
#define OUT_REPLIES 4096 /* replies in the static output block */
#define HEAD 6           /* bytes of a line kept across reads: enough to recognise "QUIT\r" */

struct conn {
    uint64_t owed;      /* reply bytes not yet written */
    uint32_t line_len;  /* bytes of the current line seen so far (saturating) */
    char head[HEAD];    /* its first bytes */
    uint8_t in_use;
};

static struct conn *conns;
static size_t max_fd;
static int ep;
static char inbuf[64 * 1024];
static char outbuf[OUT_REPLIES * REPLY_LEN];

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void close_conn(int fd) {
    conns[fd].in_use = 0;
    close(fd); /* also removes it from the epoll set */
}

static int is_quit(const char *line, size_t len) {
    if (len == 5 && line[4] == '\r')
        len = 4;
    return len == 4 && strncasecmp(line, "QUIT", 4) == 0;
}

/* Writes as much of what is owed as the socket takes. Returns -1 on a dead connection, else
 * the bytes still owed. */
static long long flush_owed(int fd, struct conn *c) {
    while (c->owed > 0) {
        /* Owed bytes are always a suffix of whole replies: start mid-reply if needed. */
        size_t skip = (REPLY_LEN - c->owed % REPLY_LEN) % REPLY_LEN;
        size_t n = c->owed < sizeof outbuf - skip ? c->owed : sizeof outbuf - skip;
        ssize_t w = write(fd, outbuf + skip, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            return -1;
        }
        c->owed -= (uint64_t)w;
    }
    return (long long)c->owed;
}

static void want(int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0)
        close_conn(fd);
}

static void on_readable(int fd) {
    struct conn *c = &conns[fd];
    ssize_t n = read(fd, inbuf, sizeof inbuf);
    if (n == 0) {
        close_conn(fd);
        return;
    }
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            close_conn(fd);
        return;
    }
    const char *p = inbuf, *end = inbuf + n;
    int quit = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t seg = (size_t)((nl ? nl : end) - p);
        /* Keep the first HEAD bytes of the line, and its length. */
        if (c->line_len < HEAD) {
            size_t take = HEAD - c->line_len < seg ? HEAD - c->line_len : seg;
            memcpy(c->head + c->line_len, p, take);
        }
        c->line_len = c->line_len + seg < c->line_len ? UINT32_MAX : c->line_len + (uint32_t)seg;
        if (!nl)
            break;
        if (is_quit(c->head, c->line_len)) {
            quit = 1;
            break;
        }
        c->owed += REPLY_LEN;
        c->line_len = 0;
        p = nl + 1;
    }
    long long left = flush_owed(fd, c);
    if (left < 0 || quit) {
        close_conn(fd);
        return;
    }
    if (left > 0)
        want(fd, EPOLLOUT); /* stop reading until the client takes its replies */
}

static void on_writable(int fd) {
    long long left = flush_owed(fd, &conns[fd]);
    if (left < 0)
        close_conn(fd);
    else if (left == 0)
        want(fd, EPOLLIN);
}

static void on_accept(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                static int told;
                if (!told++)
                    fprintf(stderr, "ceiling: out of descriptors\n");
            }
            return; /* EAGAIN, or try again on the next wakeup */
        }
        if ((size_t)fd >= max_fd) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        memset(&conns[fd], 0, sizeof conns[fd]);
        conns[fd].in_use = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            close_conn(fd);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("getrlimit");
    rl.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
        die("setrlimit");
    max_fd = rl.rlim_cur == RLIM_INFINITY ? 1 << 20 : (size_t)rl.rlim_cur;
    conns = calloc(max_fd, sizeof *conns);
    if (!conns)
        die("calloc");
    for (int i = 0; i < OUT_REPLIES; i++)
        memcpy(outbuf + i * REPLY_LEN, REPLY, REPLY_LEN);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (listen(lfd, SOMAXCONN) < 0)
        die("listen");

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = lfd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &lev) < 0)
        die("epoll_ctl");
    fprintf(stderr, "ceiling: listening on 127.0.0.1:%d, up to %zu descriptors\n", port, max_fd);

    static struct epoll_event events[1024];
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            if (!conns[fd].in_use)
                continue;
            if (e & EPOLLOUT)
                on_writable(fd);
            else if (e & (EPOLLIN | EPOLLHUP | EPOLLERR))
                on_readable(fd);
        }
    }
}
