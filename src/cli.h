/* cli.h — command-line tools that talk to a running gateway's admin listener. */
#ifndef FL_CLI_H
#define FL_CLI_H

/* `fledge stats`: a compact per-variant table from /api/v1/stats. Returns the exit status. */
int fl_cli_stats(int argc, char **argv);

#endif
