/* cli.h — command-line tools that talk to a running gateway's admin listener. Each returns the
 * process exit status: 0 done, 1 the gateway refused or could not be reached, 2 bad usage. */
#ifndef FL_CLI_H
#define FL_CLI_H

int fl_cli_stats(int argc, char **argv);     /* fledge stats: per-variant numbers */
int fl_cli_status(int argc, char **argv);    /* fledge status: routes, weights, rollouts */
int fl_cli_rollout(int argc, char **argv);   /* fledge rollout start|pause|resume|promote|abort|undo ROUTE */
int fl_cli_history(int argc, char **argv);   /* fledge history: the event log */
int fl_cli_top(int argc, char **argv);       /* fledge top: a live full-screen view */

#endif
