#!/bin/sh
# LOG_COMPILER of the compiled tests: runs the test under $TEST_WRAPPER
# (for example "valgrind --error-exitcode=99 --leak-check=full") when set.
# test_pam re-executes itself under pam_wrapper and the module runs in that
# second process, so valgrind must follow it (but not the shell helpers).
case "$1:${TEST_WRAPPER}" in
*test_pam:*valgrind*)
    exec ${TEST_WRAPPER} --trace-children=yes \
        '--trace-children-skip=*/ps-fake-helper,*/ps-probe,*/sh,*/ls,*/tr,*/sed,*/cat,*/sleep,*/pkg-config' "$@"
    ;;
esac
exec ${TEST_WRAPPER} "$@"
