#!/bin/sh
# LOG_COMPILER of the compiled tests: runs the test under $TEST_WRAPPER
# (for example "valgrind --error-exitcode=99 --leak-check=full") when set.
exec ${TEST_WRAPPER} "$@"
