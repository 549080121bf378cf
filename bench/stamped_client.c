/* A DNS load whose latencies are the kernel's: see bench/stamped_load.py, which builds and
 * runs this. One thread: queries go out on a fixed schedule (the DNS ID is the query's
 * number), answers and transmit stamps are read as they come, with ppoll(2) waiting until
 * the next query is due. Prints one latency in nanoseconds per line (answer receive stamp
 * minus query transmit stamp), then "sent N answered M stamped K" on stderr.
 *
 * usage: stamped_client PORT QUERIES SECONDS RATE   (QUERIES: dnsperf's -B format) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/errqueue.h>
#include <linux/net_tstamp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_QUERIES 65536
#define MAX_WIRE 512

static int64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The software stamp of a message's SCM_TIMESTAMPING, or 0; and the IP_RECVERR id. */
static int64_t stamp_of(struct msghdr *msg, uint32_t *id, int *has_id) {
    int64_t stamp = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_TIMESTAMPING) {
            struct scm_timestamping ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            stamp = (int64_t)ts.ts[0].tv_sec * 1000000000LL + ts.ts[0].tv_nsec;
        } else if (c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) {
            struct sock_extended_err err;
            memcpy(&err, CMSG_DATA(c), sizeof err);
            if (err.ee_origin == SO_EE_ORIGIN_TIMESTAMPING) {
                *id = err.ee_data;
                *has_id = 1;
            }
        }
    }
    return stamp;
}

static size_t load_queries(const char *path, unsigned char (**out)[MAX_WIRE], size_t **sizes) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    size_t cap = 1024, n = 0;
    *out = malloc(cap * MAX_WIRE);
    *sizes = malloc(cap * sizeof(size_t));
    unsigned char len[2];
    while (fread(len, 1, 2, f) == 2) {
        size_t size = (size_t)len[0] << 8 | len[1];
        if (size < 12 || size > MAX_WIRE) { fprintf(stderr, "bad query size %zu\n", size); exit(2); }
        if (n == cap) {
            cap *= 2;
            *out = realloc(*out, cap * MAX_WIRE);
            *sizes = realloc(*sizes, cap * sizeof(size_t));
        }
        if (fread((*out)[n], 1, size, f) != size) break;
        (*sizes)[n++] = size;
    }
    fclose(f);
    if (!n) { fprintf(stderr, "%s: no queries\n", path); exit(2); }
    return n;
}

static void drain(int fd, int flags, int64_t *table, size_t count, size_t *got) {
    unsigned char data[4096], control[512];
    for (;;) {
        struct iovec iov = {data, sizeof data};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        ssize_t size = recvmsg(fd, &msg, flags | MSG_DONTWAIT);
        if (size < 0) return;
        uint32_t id = 0;
        int has_id = 0;
        int64_t stamp = stamp_of(&msg, &id, &has_id);
        if (!stamp) continue;
        if (flags & MSG_ERRQUEUE) {
            if (has_id && id < count) { table[id] = stamp; (*got)++; }
        } else if (size >= 2) {
            size_t seq = (size_t)data[0] << 8 | data[1];
            if (seq < count) { table[seq] = stamp; (*got)++; }
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s PORT QUERIES SECONDS RATE\n", argv[0]); return 2; }
    int port = atoi(argv[1]);
    double seconds = atof(argv[3]), rate = atof(argv[4]);
    size_t count = (size_t)(seconds * rate);
    if (count == 0 || count > MAX_QUERIES) { fprintf(stderr, "1 to %d queries\n", MAX_QUERIES); return 2; }
    unsigned char (*wires)[MAX_WIRE];
    size_t *sizes;
    size_t kinds = load_queries(argv[2], &wires, &sizes);

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int buf = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (connect(fd, (struct sockaddr *)&to, sizeof to) < 0) { perror("connect"); return 1; }
    int flags = SOF_TIMESTAMPING_TX_SOFTWARE | SOF_TIMESTAMPING_RX_SOFTWARE |
                SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_ID | SOF_TIMESTAMPING_OPT_TSONLY;
    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &flags, sizeof flags) < 0) {
        perror("SO_TIMESTAMPING");
        return 1;
    }
    int64_t *sent = calloc(count, sizeof(int64_t)), *received = calloc(count, sizeof(int64_t));
    size_t seq = 0, got_tx = 0, got_rx = 0;
    int64_t start = mono_ns(), step = (int64_t)(1e9 / rate), end = 0;
    for (;;) {
        int64_t now = mono_ns();
        while (seq < count && now >= start + (int64_t)seq * step) {
            unsigned char *wire = wires[seq % kinds];
            wire[0] = (unsigned char)(seq >> 8);
            wire[1] = (unsigned char)seq;
            if (send(fd, wire, sizes[seq % kinds], 0) < 0 && errno != EAGAIN) { perror("send"); return 1; }
            seq++;
        }
        if (seq == count && !end) end = now + 1000000000LL; /* a second for the last answers */
        if (end && (now >= end || (got_rx >= count && got_tx >= count))) break;
        int64_t wait = end ? end - now : start + (int64_t)seq * step - now;
        if (wait < 0) wait = 0;
        struct timespec timeout = {wait / 1000000000LL, wait % 1000000000LL};
        struct pollfd p = {fd, POLLIN, 0};
        if (ppoll(&p, 1, &timeout, NULL) > 0) {
            if (p.revents & POLLERR) drain(fd, MSG_ERRQUEUE, sent, count, &got_tx);
            if (p.revents & POLLIN) drain(fd, 0, received, count, &got_rx);
        }
    }
    size_t both = 0;
    for (size_t i = 0; i < count; i++) {
        if (sent[i] && received[i] >= sent[i]) {
            printf("%lld\n", (long long)(received[i] - sent[i]));
            both++;
        }
    }
    fprintf(stderr, "sent %zu answered %zu stamped %zu\n", count, got_rx, both);
    return 0;
}
