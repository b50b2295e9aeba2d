/* mock.h — `fledge mock`: a fake OpenAI-compatible / KServe model server with configurable
 * latency, streaming speed and error rate, for demos, tests and benchmarks. */
#ifndef FL_MOCK_H
#define FL_MOCK_H

/* Runs the mock server until SIGINT/SIGTERM. argv[0] is "mock"; the options follow
 * (`fledge mock --help` lists them). Returns the process exit code: 0 after a clean stop
 * or --help, 1 when it cannot start (e.g. the address is taken), 2 for bad options.
 * Call it from the main thread only, once per process: it installs signal handling
 * (SIGINT, SIGTERM handled; SIGPIPE ignored) and runs its own worker threads. */
int fl_mock_main(int argc, char **argv);

#endif
