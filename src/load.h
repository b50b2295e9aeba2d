/* load.h — `fledge load`: a paced load of chat completions from many sticky users against a
 * gateway, with a progress line each second and a summary per variant at the end (the demo's
 * traffic, and a quick check of a deployment). Runs in its own process; blocking threads. */
#ifndef FL_LOAD_H
#define FL_LOAD_H

/* The command's main: 0 when every request got an answer below 500 or was cut by the end,
 * 1 when some failed, 2 on bad options. */
int fl_load_main(int argc, char **argv);

#endif
