/* server.h — the process: worker threads (one libuv loop and SO_REUSEPORT listener each, their
 * state in worker.h), the control loop on the main thread (signals, reload, admin listener) and
 * the drain on SIGTERM. */
#ifndef FL_SERVER_H
#define FL_SERVER_H

/* Runs the gateway with the config at path until SIGTERM/SIGINT and a drain. Returns the
 * process exit status. Main thread. */
int fl_server_run(const char *conf_path);

#endif
