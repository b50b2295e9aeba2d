/* claim.c — the start-up check that no one else serves our address. Two parts, because each
 * alone leaves a gap: the probe (a plain bind) sees any process listening, fledge or not, but two
 * fledges starting in the same instant could both probe before either binds; the lock (an
 * abstract unix socket, per network namespace like the ports, gone with the process) closes that
 * window between fledges. */
#include "claim.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static socklen_t lock_name(const fl_addr_t *addr, struct sockaddr_un *un) {
  memset(un, 0, sizeof *un);
  un->sun_family = AF_UNIX;             /* sun_path[0] stays '\0': the abstract namespace */
  int n = snprintf(un->sun_path + 1, sizeof un->sun_path - 1, "fledge/listen/%s", addr->text);
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

/* The pid of the process holding the lock (it listens on it for this question), 0 if unknown. */
static pid_t holder_pid(const struct sockaddr_un *un, socklen_t len) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct ucred cred = {0};
  socklen_t cred_len = sizeof cred;
  if (fd >= 0 && connect(fd, (const struct sockaddr *)un, len) == 0)
    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len);
  if (fd >= 0) close(fd);
  return cred.pid;
}

static int take_lock(const fl_addr_t *addr, int *fd_out, pid_t *holder) {
  struct sockaddr_un un;
  socklen_t len = lock_name(addr, &un);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -errno;
  if (bind(fd, (const struct sockaddr *)&un, len) != 0) {
    int err = -errno;
    close(fd);
    if (err == -EADDRINUSE) *holder = holder_pid(&un, len);
    return err;
  }
  listen(fd, 8);                        /* only so that a refused claimant can learn our pid */
  *fd_out = fd;
  return 0;
}

/* SO_REUSEADDR as the real sockets have it (connections of a previous run in TIME_WAIT do not
 * count), but no SO_REUSEPORT: then any socket listening on the address refuses the bind. */
static int probe(const fl_addr_t *addr) {
  int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  int one = 1, rc = 0;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0)
    rc = -errno;
  close(fd);
  return rc;
}

int fl_claim_take(const fl_addr_t *addr, const char *what, fl_claim_t *out, char *err, size_t err_cap) {
  out->lock_fd = -1;
  pid_t holder = 0;
  int rc = take_lock(addr, &out->lock_fd, &holder);
  bool by_fledge = rc == -EADDRINUSE;
  if (rc == 0 && (rc = probe(addr)) != 0) fl_claim_release(out);
  if (rc == 0) return 0;
  if (rc != -EADDRINUSE) {
    snprintf(err, err_cap, "%s %s: %s", what, addr->text, strerror(-rc));
    return rc;
  }
  char who[48] = "another process";
  if (by_fledge) snprintf(who, sizeof who, holder > 0 ? "another fledge (pid %d)" : "another fledge", (int)holder);
  snprintf(err, err_cap,
           "%s %s: address already in use by %s; to share it on purpose (a binary upgrade), write "
           "%s: {address: %s, share: true}", what, addr->text, who, what, addr->text);
  return rc;
}

void fl_claim_release(fl_claim_t *c) {
  if (c->lock_fd >= 0) close(c->lock_fd);
  c->lock_fd = -1;
}
