/* fuzz.h — one macro for every fuzz target: built with libFuzzer (make fuzz) it is the
 * LLVMFuzzerTestOneInput entry point; built for replay (FL_FUZZ_REPLAY, tests/unit/
 * test_fuzz_replay.c) it is fl_fuzz_NAME, run by make test over the kept inputs. */
#ifndef FL_FUZZ_H
#define FL_FUZZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef FL_FUZZ_REPLAY
#define FL_FUZZ_TARGET(name) int fl_fuzz_##name(const uint8_t *data, size_t size)
#else
#define FL_FUZZ_TARGET(name) int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#endif

#endif
