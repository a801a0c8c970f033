/*
 * listener.c — the server's own accept loop for plaintext addresses (TCP and unix sockets).
 *
 * gRPC core 1.51's listener stops accepting for good after one accept4() fails with EMFILE,
 * and it has no connection limit. So for plaintext the server binds and accepts itself and
 * hands every connection to gRPC with grpc_server_add_channel_from_fd (which supports only
 * insecure credentials: TLS keeps gRPC's listener, see server.h).
 *
 * One thread polls the listening sockets, the connections accepted but not yet handed over
 * and a wake-up pipe:
 *   - a new connection is refused (accepted and closed at once) while max_connections are
 *     open; it waits in `pending` until it sends its first bytes (then it goes to gRPC) or
 *     until handshake_seconds pass (then it is closed), so silent sockets cannot pile up;
 *   - accept4() failing for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM)
 *     pauses accepting for 100 ms and retries: connections that close free descriptors and
 *     the server accepts again;
 *   - connections handed to gRPC are counted until gRPC closes them: the table keeps each
 *     one's descriptor and socket inode, and a descriptor that is closed or now names another
 *     file (fstat) is a closed connection.
 */
#include "rpc.h"

#include <grpc/grpc.h>
#include <grpc/grpc_posix.h>
#include <grpc/grpc_security.h>

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTEN     4        /* listening sockets (a name may resolve to v4 and v6) */
#define ACCEPT_BATCH   64       /* accept4 calls per wake-up */
#define BACKOFF_S      0.1      /* pause after accept4 ran out of descriptors */
#define SCAN_EVERY_S   0.05     /* at most this often: recount the connections gRPC holds */

typedef struct conn {
    int    fd;
    ino_t  ino;
    double t;                   /* accepted at (pending) */
} conn;

struct rpc_listener {
    int                      lfd[MAX_LISTEN];
    int                      n_lfd;
    char                     unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int                      wake[2];
    pthread_t                th;
    int                      started;
    grpc_server             *server;
    grpc_server_credentials *creds;
    int                      max;
    double                   handshake_s;
    conn                    *pending, *live;
    int                      n_pending, n_live;
    struct pollfd           *pfd;
    double                   backoff_until, last_scan, last_warn_limit, last_warn_fd;
    unsigned long long       refused;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int errf(char *err, size_t errn, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errn, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- binding --------------------------------------------------------------------------- */

static int bind_unix(rpc_listener *l, const char *path, char *err, size_t errn)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (!path[0] || strlen(path) >= sizeof sa.sun_path)
        return errf(err, errn, HSADB_ERR_INVALID, "unix socket path '%.200s' is empty or longer "
                    "than %zu bytes", path, sizeof sa.sun_path - 1);
    memcpy(sa.sun_path, path, strlen(path));
    struct stat st;
    if (lstat(path, &st) == 0) {                /* a stale socket of an earlier run */
        if (!S_ISSOCK(st.st_mode))
            return errf(err, errn, EEXIST, "'%s' exists and is not a socket", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errf(err, errn, errno, "socket: %s", strerror(errno));
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, SOMAXCONN) != 0) {
        int e = errno;
        close(fd);
        return errf(err, errn, e, "cannot listen on unix:%s: %s", path, strerror(e));
    }
    l->lfd[l->n_lfd++] = fd;
    snprintf(l->unix_path, sizeof l->unix_path, "%s", path);
    return 0;
}

static int bind_tcp(rpc_listener *l, const char *listen_addr, int *port, char *err, size_t errn)
{
    char host[256], serv[32];
    const char *colon;
    if (listen_addr[0] == '[') {
        const char *end = strchr(listen_addr, ']');
        if (!end || end[1] != ':')
            return errf(err, errn, HSADB_ERR_INVALID, "bad address '%.200s': expected [V6]:PORT",
                        listen_addr);
        snprintf(host, sizeof host, "%.*s", (int)(end - listen_addr - 1), listen_addr + 1);
        colon = end + 1;
    } else {
        colon = strrchr(listen_addr, ':');
        if (!colon)
            return errf(err, errn, HSADB_ERR_INVALID, "bad address '%.200s': expected ADDR:PORT "
                        "or unix:PATH", listen_addr);
        snprintf(host, sizeof host, "%.*s", (int)(colon - listen_addr), listen_addr);
    }
    snprintf(serv, sizeof serv, "%s", colon + 1);
    char *endp;
    long p = strtol(serv, &endp, 10);
    if (!serv[0] || *endp || p < 0 || p > 65535)
        return errf(err, errn, HSADB_ERR_INVALID, "bad port in '%.200s'", listen_addr);
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int g = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL, serv, &hints, &res);
    if (g != 0)
        return errf(err, errn, HSADB_ERR_INVALID, "cannot resolve '%.200s': %s", host,
                    gai_strerror(g));
    int n_res = 0;
    for (struct addrinfo *a = res; a; a = a->ai_next)
        n_res++;
    int bound_port = (int)p, rc = 0;
    char first_err[200] = "";
    for (struct addrinfo *a = res; a && l->n_lfd < MAX_LISTEN; a = a->ai_next) {
        if (a->ai_family != AF_INET && a->ai_family != AF_INET6)
            continue;
        if (a->ai_family == AF_INET)
            ((struct sockaddr_in *)a->ai_addr)->sin_port = htons((uint16_t)bound_port);
        else
            ((struct sockaddr_in6 *)a->ai_addr)->sin6_port = htons((uint16_t)bound_port);
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (a->ai_family == AF_INET6 && n_res > 1)      /* v4 gets its own socket */
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, SOMAXCONN) != 0) {
            if (!first_err[0])
                snprintf(first_err, sizeof first_err, "%s", strerror(errno));
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
            bound_port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                                      : ((struct sockaddr_in6 *)&ss)->sin6_port);
        l->lfd[l->n_lfd++] = fd;
    }
    freeaddrinfo(res);
    if (l->n_lfd == 0)
        rc = errf(err, errn, HSADB_ERR_INVALID, "cannot listen on %.200s (%s)", listen_addr,
                  first_err[0] ? first_err : "no usable address");
    *port = bound_port;
    return rc;
}

int rpc_listener_open(const char *listen_addr, int max_connections, double handshake_seconds,
                      rpc_listener **out, int *port, char *err, size_t errn)
{
    *out = NULL;
    *port = 0;
    rpc_listener *l = calloc(1, sizeof *l);
    if (!l)
        return errf(err, errn, ENOMEM, "out of memory");
    l->wake[0] = l->wake[1] = -1;
    l->max = max_connections > 0 ? max_connections : 1;
    l->handshake_s = handshake_seconds;
    int rc;
    l->pending = calloc((size_t)l->max, sizeof *l->pending);
    l->live = calloc((size_t)l->max, sizeof *l->live);
    l->pfd = calloc((size_t)l->max + MAX_LISTEN + 1, sizeof *l->pfd);
    if (!l->pending || !l->live || !l->pfd) {
        rc = errf(err, errn, ENOMEM, "out of memory");
        goto fail;
    }
    if (pipe2(l->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        rc = errf(err, errn, errno, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (strncmp(listen_addr, "unix:", 5) == 0) {
        const char *path = listen_addr + 5;
        if (strncmp(path, "//", 2) == 0)        /* unix:///abs/path, as gRPC spells it */
            path += 2;
        rc = bind_unix(l, path, err, errn);
    } else {
        rc = bind_tcp(l, listen_addr, port, err, errn);
    }
    if (rc)
        goto fail;
    *out = l;
    return 0;
fail:
    rpc_listener_close(l);
    return rc;
}

/* ---- the accept loop ------------------------------------------------------------------- */

/* Forget the connections gRPC has closed. */
static void scan_live(rpc_listener *l, double now)
{
    l->last_scan = now;
    for (int i = l->n_live - 1; i >= 0; i--) {
        struct stat st;
        if (fstat(l->live[i].fd, &st) != 0 || st.st_ino != l->live[i].ino)
            l->live[i] = l->live[--l->n_live];
    }
}

static void hand_over(rpc_listener *l, int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return;
    }
    for (int i = 0; i < l->n_live; i++)       /* this descriptor's earlier connection is gone */
        if (l->live[i].fd == fd) {
            l->live[i] = l->live[--l->n_live];
            break;
        }
    l->live[l->n_live++] = (conn){ fd, st.st_ino, 0 };
    grpc_server_add_channel_from_fd(l->server, fd, l->creds);
}

static void accept_some(rpc_listener *l, int lfd, double now)
{
    for (int k = 0; k < ACCEPT_BATCH; k++) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == EAGAIN || e == EWOULDBLOCK)
                return;
            if (e == EINTR || e == ECONNABORTED || e == EPROTO)
                continue;
            /* EMFILE, ENFILE, ENOBUFS, ENOMEM or worse: pause, then try again */
            l->backoff_until = now + BACKOFF_S;
            scan_live(l, now);
            if (now - l->last_warn_fd >= 1.0) {
                l->last_warn_fd = now;
                fprintf(stderr, "hsadb: serve: accept: %s (%d connections open); accepting "
                        "again when descriptors free up\n", strerror(e), l->n_live + l->n_pending);
            }
            return;
        }
        if (l->n_live + l->n_pending >= l->max && now - l->last_scan >= SCAN_EVERY_S)
            scan_live(l, now);
        if (l->n_live + l->n_pending >= l->max) {
            close(fd);
            l->refused++;
            if (now - l->last_warn_limit >= 1.0) {
                l->last_warn_limit = now;
                fprintf(stderr, "hsadb: serve: %d connections open (--max-connections): "
                        "refusing new ones (%llu so far)\n", l->max, l->refused);
            }
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);   /* fails on unix: fine */
        l->pending[l->n_pending++] = (conn){ fd, 0, now };
    }
}

static void *listener_main(void *arg)
{
    rpc_listener *l = arg;
    for (;;) {
        double now = now_s();
        int k = 0;
        l->pfd[k++] = (struct pollfd){ l->wake[0], POLLIN, 0 };
        int listening = now >= l->backoff_until;
        if (listening)
            for (int i = 0; i < l->n_lfd; i++)
                l->pfd[k++] = (struct pollfd){ l->lfd[i], POLLIN, 0 };
        int first_pending = k;
        double next = now + 1.0;
        if (!listening && l->backoff_until < next)
            next = l->backoff_until;
        for (int i = 0; i < l->n_pending; i++) {
            l->pfd[k++] = (struct pollfd){ l->pending[i].fd, POLLIN, 0 };
            if (l->pending[i].t + l->handshake_s < next)
                next = l->pending[i].t + l->handshake_s;
        }
        int timeout_ms = (int)((next - now) * 1000) + 1;
        if (timeout_ms < 1)
            timeout_ms = 1;
        int n = poll(l->pfd, (nfds_t)k, timeout_ms);
        if (n < 0 && errno != EINTR)
            break;
        if (l->pfd[0].revents)
            break;                              /* rpc_listener_close */
        now = now_s();
        /* connections waiting for their first bytes: hand over, or drop when silent too long
         * (pending[i] is pfd[first_pending + i]; walk down so removal keeps the pairing) */
        for (int i = l->n_pending - 1; i >= 0; i--) {
            short re = n > 0 ? l->pfd[first_pending + i].revents : 0;
            if (!re && now - l->pending[i].t < l->handshake_s)
                continue;
            int fd = l->pending[i].fd;
            l->pending[i] = l->pending[--l->n_pending];
            if (re & POLLIN)
                hand_over(l, fd);
            else
                close(fd);                      /* silent past the limit, or hung up */
        }
        if (listening && n > 0)
            for (int i = 0; i < l->n_lfd; i++)
                if (l->pfd[1 + i].revents)
                    accept_some(l, l->lfd[i], now);
        if (now - l->last_scan >= 1.0)
            scan_live(l, now);
    }
    return NULL;
}

int rpc_listener_start(rpc_listener *l, grpc_server *server)
{
    l->server = server;
    l->creds = grpc_insecure_server_credentials_create();
    if (!l->creds)
        return ENOMEM;
    if (pthread_create(&l->th, NULL, listener_main, l) != 0)
        return EAGAIN;
    l->started = 1;
    return 0;
}


void rpc_listener_close(rpc_listener *l)
{
    if (!l)
        return;
    if (l->started) {
        char b = 1;
        ssize_t w = write(l->wake[1], &b, 1);
        (void)w;
        pthread_join(l->th, NULL);
    }
    for (int i = 0; i < l->n_lfd; i++)
        close(l->lfd[i]);
    if (l->unix_path[0])
        unlink(l->unix_path);
    for (int i = 0; i < l->n_pending; i++)
        close(l->pending[i].fd);
    if (l->wake[0] >= 0)
        close(l->wake[0]);
    if (l->wake[1] >= 0)
        close(l->wake[1]);
    if (l->creds)
        grpc_server_credentials_release(l->creds);
    free(l->pending);
    free(l->live);
    free(l->pfd);
    free(l);
}
