/* explain.h — `fledge explain`: which route, rule or sticky bucket would send a request where,
 * and why, from a config file and a request described on the command line. Command line only. */
#ifndef FL_EXPLAIN_H
#define FL_EXPLAIN_H

/* Returns the exit status: 0 explained, 1 the config could not be loaded, 2 bad usage. */
int fl_explain_main(int argc, char **argv);

#endif
