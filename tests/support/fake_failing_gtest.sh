#!/usr/bin/env bash
# A stand-in for a GoogleTest binary with one failing and one skipped test, for the self-test of
# tools/gpu_check.sh and tests/run_tests.sh on a machine without a GPU: it prints what GoogleTest
# prints and says whether it was rerun with CUDA_LAUNCH_BLOCKING=1.
echo "[==========] Running 3 tests from 1 test suite."
if [ "${CUDA_LAUNCH_BLOCKING:-0}" = 1 ]; then echo "fake: rerun with CUDA_LAUNCH_BLOCKING=1 ($*)"; fi
echo "[ RUN      ] FakeCuda.Passes"
echo "[       OK ] FakeCuda.Passes (0 ms)"
echo "[ RUN      ] FakeCuda.Skipped"
echo "[  SKIPPED ] FakeCuda.Skipped (0 ms)"
echo "[ RUN      ] FakeCuda.Fails"
echo "fake_test.cpp:12: Failure: the kernel wrote 7 where 8 was expected"
echo "[  FAILED  ] FakeCuda.Fails (1 ms)"
echo "[==========] 3 tests from 1 test suite ran. (1 ms total)"
echo "[  PASSED  ] 1 test."
echo "[  SKIPPED ] 1 test, listed below:"
echo "[  SKIPPED ] FakeCuda.Skipped"
echo "[  FAILED  ] 1 test, listed below:"
echo "[  FAILED  ] FakeCuda.Fails"
exit 1
