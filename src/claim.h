/* claim.h — one gateway per address: before the workers bind their SO_REUSEPORT sockets (which
 * would silently share the port with any other process that set it too), a claim checks that
 * nothing listens on the address and holds a lock on it for this process. Control thread. */
#ifndef FL_CLAIM_H
#define FL_CLAIM_H

#include "netaddr.h"

typedef struct fl_claim {
  int lock_fd;                      /* the abstract unix socket named after the address; -1: none */
} fl_claim_t;

#define FL_CLAIM_NONE {.lock_fd = -1}

/* Claims addr for this process: takes the lock named after addr->text (refused while another
 * fledge holds it), then binds a probe socket without SO_REUSEPORT (refused while anything
 * listens there) and closes it, so the caller's own sockets can bind right after. what names
 * the config key in messages ("listen", "admin.listen"). Returns 0, or a negative errno with
 * "WHAT ADDR: why" in err (EADDRINUSE: in use, naming the other fledge's pid when known).
 * *out is released with fl_claim_release. */
int fl_claim_take(const fl_addr_t *addr, const char *what, fl_claim_t *out, char *err, size_t err_cap);

/* Lets go of the lock: another fledge may claim the address from now on (the drain calls this
 * once its listeners close). Safe on an unclaimed or released claim. */
void fl_claim_release(fl_claim_t *c);

#endif
