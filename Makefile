# minipipe build: probes for every dependency (one ✓/✗ line each), one static library,
# test / example / benchmark binaries, all under build/. GNU make, no CMake.
#
#   make            build everything that the probes allow
#   make test       install missing Debian packages (as root), build, run every test
#   make demo       install, build, run the main example
#   make bench      kernel benchmarks against PyTorch (GPU machine)
#   make gpu-check OUT=dir   the one-shot GPU check: build, tests, sanitizer, benchmarks, report
#   make deps       install (or print the command for) the Debian packages; header-only
#                   dependencies (nlohmann/json, cudnn-frontend) go to the git-ignored .deps/ folder
#
# Overrides: CUDA=0 (CPU-only), CUDA_ARCH=90, DEBUG=1, SANITIZE=1 (ASan+UBSan on host code),
# DEPS=0 (test / demo never run `deps`: offline machines), SIMD_CLONES=0 (the CPU kernels' fast
# paths compiled for baseline x86-64 only, not also AVX2 / AVX-512), and HAVE_<X>=0 to pretend a
# probe failed (X: CUBLAS CUDNN CUDNN_FRONTEND NCCL MPI OPENBLAS GTEST JSON).

SHELL := /bin/bash
comma := ,
BUILD ?= build$(if $(ONLY),/only-$(subst $(eval) ,-,$(strip $(ONLY))))
CUDA_HOME ?= /usr/local/cuda
CXX ?= g++

# ---------------------------------------------------------------- probes
# First existing file among candidates.
first_file = $(firstword $(wildcard $(1)))

NVCC ?= $(or $(shell command -v nvcc 2>/dev/null),$(call first_file,$(CUDA_HOME)/bin/nvcc))
CUDA ?= $(if $(NVCC),1,0)
CUDA_INC_DIRS := $(CUDA_HOME)/include /usr/include /usr/include/x86_64-linux-gnu
CUDA_LIB_DIRS := $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu

HAVE_CUBLAS ?= $(if $(and $(call first_file,$(addsuffix /cublas_v2.h,$(CUDA_INC_DIRS))),$(call first_file,$(addsuffix /libcublas.so,$(CUDA_LIB_DIRS)))),1,0)
HAVE_CUDNN ?= $(if $(and $(call first_file,$(addsuffix /cudnn.h,$(CUDA_INC_DIRS))),$(call first_file,$(addsuffix /libcudnn.so*,$(CUDA_LIB_DIRS)))),1,0)
HAVE_NCCL ?= $(if $(and $(call first_file,$(addsuffix /nccl.h,$(CUDA_INC_DIRS))),$(call first_file,$(addsuffix /libnccl.so*,$(CUDA_LIB_DIRS)))),1,0)
MPICXX ?= $(shell command -v mpicxx 2>/dev/null)
HAVE_MPI ?= $(if $(MPICXX),1,0)
OPENBLAS_FLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
OPENBLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null)
HAVE_OPENBLAS ?= $(if $(OPENBLAS_LIBS),1,0)
HAVE_GTEST ?= $(if $(and $(call first_file,/usr/include/gtest/gtest.h /usr/local/include/gtest/gtest.h),$(call first_file,/usr/lib/x86_64-linux-gnu/libgtest.* /usr/lib/libgtest.* /usr/local/lib/libgtest.*)),1,0)
# Header-only dependencies live in .deps/include when `make deps` put them there (so that they
# travel with the working tree to an offline machine), else in the system's include paths.
DEPS_DIR := .deps
JSON_HEADER := $(call first_file,$(DEPS_DIR)/include/nlohmann/json.hpp /usr/include/nlohmann/json.hpp /usr/local/include/nlohmann/json.hpp)
HAVE_JSON ?= $(if $(JSON_HEADER),1,0)
JSON_FLAGS := $(if $(filter $(DEPS_DIR)/%,$(JSON_HEADER)),-I$(DEPS_DIR)/include)
# cudnn-frontend: NVIDIA's header-only C++ graph API over cuDNN (fused attention, kernels/cudnn/).
# Optional: without it (or without cuDNN) attention runs the composed path. Its experimental
# engines call NVRTC, so libnvrtc is linked with it.
CUDNN_FRONTEND_HEADER := $(call first_file,$(DEPS_DIR)/include/cudnn_frontend.h /usr/include/cudnn_frontend.h /usr/local/include/cudnn_frontend.h)
CUDNN_FRONTEND_VERSION_FOUND := $(if $(CUDNN_FRONTEND_HEADER),$(shell sed -n 's/^\#define CUDNN_FRONTEND_\(MAJOR\|MINOR\|PATCH\)_VERSION \([0-9]*\).*/\2/p' $(dir $(CUDNN_FRONTEND_HEADER))cudnn_frontend_version.h 2>/dev/null | paste -sd.))
HAVE_NVRTC := $(if $(call first_file,$(addsuffix /libnvrtc.so,$(CUDA_LIB_DIRS))),1,0)
HAVE_CUDNN_FRONTEND ?= $(if $(and $(CUDNN_FRONTEND_HEADER),$(filter 1,$(HAVE_NVRTC))),1,0)

# CUDA needs nvcc and cuBLAS (the GEMMs); without cuBLAS the build falls back to CPU-only.
ifeq ($(CUDA),1)
  ifneq ($(HAVE_CUBLAS),1)
    CUDA := 0
    CUDA_NOTE := (nvcc found but cuBLAS missing: CPU-only build)
  endif
endif
ifneq ($(CUDA),1)
  HAVE_CUDNN := 0
  HAVE_NCCL := 0
endif
# The frontend is only used over cuDNN in a CUDA build (override: a command-line 1 cannot revive it).
ifneq ($(CUDA)$(HAVE_CUDNN),11)
  override HAVE_CUDNN_FRONTEND := 0
endif

# Default architecture: the visible GPU's compute capability, else Hopper (sm_90). nvidia-smi is asked
# lazily — only when a CUDA compile or the probe lines need CUDA_ARCH, so `make clean`, `make help` and
# CPU-only builds never run it — and at most once. Anything but digits (an nvidia-smi error, "sm_90")
# falls back to 90, saying so when a value was given.
strip_digits = $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst 6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1)))))))))))
arch_or_default = $(if $(and $(strip $(1)),$(if $(call strip_digits,$(strip $(1))),,ok)),$(strip $(1)),$(if $(strip $(1)),$(info CUDA_ARCH='$(strip $(1))' is not a compute capability in digits (e.g. 90): using 90))90)
ifeq ($(origin CUDA_ARCH),undefined)
  CUDA_ARCH = $(eval CUDA_ARCH := $(call arch_or_default,$(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '. ')))$(CUDA_ARCH)
else
  override CUDA_ARCH := $(call arch_or_default,$(CUDA_ARCH))
endif

mark = $(if $(filter 1,$(1)),✓,✗)
empty :=
indent := $(empty)  $(empty)
ifeq ($(MAKELEVEL),0)
ifneq ($(filter-out clean deps deps-cudnn-frontend help,$(or $(MAKECMDGOALS),all)),)
$(info minipipe build probes (override with NAME=0/1 on the command line):)
$(info $(indent)$(call mark,$(CUDA)) nvcc         $(if $(filter 1,$(CUDA)),$(NVCC) sm_$(CUDA_ARCH),not used: CPU-only build $(CUDA_NOTE)))
$(info $(indent)$(call mark,$(HAVE_CUBLAS)) cuBLAS)
$(info $(indent)$(call mark,$(HAVE_CUDNN)) cuDNN        $(if $(filter 1,$(HAVE_CUDNN_FRONTEND)),through cudnn-frontend (below),$(if $(filter 1,$(HAVE_CUDNN)),not used without cudnn-frontend,not found)))
$(info $(indent)$(call mark,$(HAVE_CUDNN_FRONTEND)) cudnn-frontend $(if $(filter 1,$(HAVE_CUDNN_FRONTEND)),$(CUDNN_FRONTEND_VERSION_FOUND) $(CUDNN_FRONTEND_HEADER): fused attention,$(if $(CUDNN_FRONTEND_HEADER),not used (HAVE_CUDNN_FRONTEND=0$(comma) or no CUDA / cuDNN / libnvrtc),missing: make deps puts it in $(DEPS_DIR)/include): attention uses the composed path))
$(info $(indent)$(call mark,$(HAVE_NCCL)) NCCL)
$(info $(indent)$(call mark,$(HAVE_MPI)) MPI          $(MPICXX))
$(info $(indent)$(call mark,$(HAVE_OPENBLAS)) OpenBLAS     $(if $(filter 1,$(HAVE_OPENBLAS)),,CPU GEMM uses the plain loop reference))
$(info $(indent)$(call mark,$(HAVE_GTEST)) GoogleTest)
$(info $(indent)$(call mark,$(HAVE_JSON)) nlohmann/json $(or $(JSON_HEADER),missing: make deps puts it in $(DEPS_DIR)/include))
endif
endif

# The library cannot be built without nlohmann/json (configs, checkpoints): say so up front
# rather than fail inside a compile. `test`, `demo` and `deps` run `deps` first, so they pass.
ifneq ($(HAVE_JSON),1)
ifneq ($(filter-out clean deps deps-cudnn-frontend help test demo gpu-check,$(or $(MAKECMDGOALS),all)),)
$(error nlohmann/json is missing (looked in $(DEPS_DIR)/include, /usr/include, /usr/local/include): run `make deps`, or copy json.hpp to $(DEPS_DIR)/include/nlohmann/)
endif
endif

# ---------------------------------------------------------------- flags
OPT := $(if $(filter 1,$(DEBUG)),-O0 -g3,-O2 -g)
SANITIZE_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer
SAN := $(if $(filter 1,$(SANITIZE)),$(SANITIZE_FLAGS))
DEFINES := -DMP_SOURCE_DIR=\"$(CURDIR)\" -DMP_CUDA=$(CUDA) -DMP_OPENBLAS=$(HAVE_OPENBLAS) -DMP_NCCL=$(HAVE_NCCL) \
           -DMP_CUDNN_FRONTEND=$(HAVE_CUDNN_FRONTEND) -DMP_DEBUG=$(if $(filter 1,$(DEBUG)),1,0)
CXXFLAGS := -std=c++17 $(OPT) $(SAN) -Wall -Wextra -fopenmp -I. $(DEFINES) -MMD -MP $(OPENBLAS_FLAGS) $(JSON_FLAGS)
LDFLAGS := -fopenmp $(SAN)
LDLIBS := $(OPENBLAS_LIBS) -lpthread

ifeq ($(CUDA),1)
  CUDA_INC := $(addprefix -I,$(wildcard $(CUDA_HOME)/include))
  CXXFLAGS += $(CUDA_INC)
  NVCCFLAGS = -std=c++17 $(if $(filter 1,$(DEBUG)),-O0 -g -G,-O3 -lineinfo) -I. $(DEFINES) -MMD -MP \
               -gencode arch=compute_$(CUDA_ARCH),code=sm_$(CUDA_ARCH) -Xcompiler -Wall \
               --expt-relaxed-constexpr
  CUDA_LINK_DIRS := $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib)
  LDLIBS += $(addprefix -L,$(CUDA_LINK_DIRS)) $(addprefix -Wl$(comma)-rpath$(comma),$(CUDA_LINK_DIRS)) -lcublasLt -lcublas -lcudart
endif
# The CPU kernels: no fused multiply-adds, so a vectorized loop, its scalar tail and every
# instruction set of a multi-versioned function (kernels/cpu/simd_math.h) round alike and a
# micro-batch gets the bits of its whole batch; no trapping math, so GCC may turn the selects of
# those loops into blends (nothing reads the floating-point exception flags); -O3 (not with
# DEBUG=1): ~3% off a small model's CPU step, the same bits (no fast-math: sums keep their order).
# SIMD_CLONES=0: no multi-versioned functions (MP_NO_SIMD_CLONES), baseline x86-64 code only.
# They reach the compiler through their own rule (below), after CXXFLAGS: a CXXFLAGS given on the
# command line replaces CXXFLAGS, not these.
SIMD_CLONES ?= 1
CPU_KERNEL_FLAGS := -ffp-contract=off -fno-trapping-math $(if $(filter 1,$(DEBUG)),,-O3) \
                    $(if $(filter 0,$(SIMD_CLONES)),-DMP_NO_SIMD_CLONES)
ifeq ($(HAVE_CUDNN_FRONTEND),1)
  LDLIBS += -lcudnn -lnvrtc
  # Only the files that include the frontend see its headers: as system headers (their warnings are
  # not ours), without its bundled JSON library (not needed; the project has its own nlohmann/json).
  CUDNN_FRONTEND_FLAGS := -isystem $(dir $(CUDNN_FRONTEND_HEADER)) -DCUDNN_FRONTEND_SKIP_JSON_LIB
endif

# ---------------------------------------------------------------- sources
LIB_DIRS := base tensor tensor/ops kernels/cpu autograd autograd/functions nn pipeline train
LIB_CPP := $(wildcard $(addsuffix /*.cpp,$(LIB_DIRS)))
# The parts of pipeline/ and train/ that talk to other ranks need comm/, which needs MPI. Without
# it, train/ is its config, its builders, its data, the run summary and the start-up without MPI
# (what test_config, test_startup and the other unit tests use).
TRAIN_NO_COMM_CPP := train/config.cpp train/config_rules.cpp train/build.cpp train/data.cpp train/summary.cpp \
                     train/startup.cpp train/output_paths.cpp
RANKS_CPP := pipeline/engine.cpp pipeline/gather.cpp $(filter-out $(TRAIN_NO_COMM_CPP),$(wildcard train/*.cpp))
ifneq ($(HAVE_MPI),1)
  LIB_CPP := $(filter-out $(RANKS_CPP),$(LIB_CPP))
endif
# comm/ is built only with MPI (HAVE_MPI=1); NcclCommunicator only with NCCL and CUDA too.
ifeq ($(HAVE_MPI),1)
  LIB_CPP += $(if $(filter 11,$(HAVE_NCCL)$(CUDA)),$(wildcard comm/*.cpp),$(filter-out comm/nccl_%.cpp,$(wildcard comm/*.cpp)))
endif
LIB_CU := $(if $(filter 1,$(CUDA)),$(wildcard kernels/cuda/*.cu),)
# kernels/cudnn/: host C++ over cuDNN's graph API (compiled by $(CXX): no device code of ours).
LIB_CPP += $(if $(filter 1,$(HAVE_CUDNN_FRONTEND)),$(wildcard kernels/cudnn/*.cpp),)
# ONLY=<family ...>: build just the core plus those kernel families (and run their tests with
# `make ONLY=... check-only`) — for working on one family while others are mid-edit.
ifdef ONLY
  CORE_CPP := $(wildcard base/*.cpp tensor/*.cpp) kernels/cpu/init.cpp kernels/cpu/index_check.cpp
  CORE_CU := kernels/cuda/init.cu kernels/cuda/index_check.cu
  LIB_CPP := $(CORE_CPP) $(wildcard $(foreach f,$(ONLY),kernels/cpu/$(f).cpp tensor/ops/$(f).cpp))
  LIB_CPP += $(if $(filter 1,$(HAVE_CUDNN_FRONTEND)),$(wildcard $(foreach f,$(ONLY),kernels/cudnn/$(f).cpp)),)
  LIB_CU := $(if $(filter 1,$(CUDA)),$(CORE_CU) $(wildcard $(foreach f,$(ONLY),kernels/cuda/$(f).cu)),)
endif
LIB_OBJ := $(LIB_CPP:%.cpp=$(BUILD)/obj/%.o) $(LIB_CU:%.cu=$(BUILD)/obj/%.cu.o)
LIB := $(BUILD)/libminipipe.a

CORE_TESTS := tests/test_tensor.cpp tests/test_allocator.cpp
TEST_SRC := $(if $(ONLY),$(CORE_TESTS) $(wildcard $(foreach f,$(ONLY),tests/test_$(f).cpp)),$(wildcard tests/test_*.cpp))
TEST_BIN := $(TEST_SRC:tests/%.cpp=$(BUILD)/tests/%)
TEST_OBJ := $(TEST_SRC:%.cpp=$(BUILD)/obj/%.o)
TEST_SUPPORT_SRC := $(if $(ONLY),tests/support/test_util.cpp,$(wildcard tests/support/*.cpp))
TEST_SUPPORT_OBJ := $(patsubst %.cpp,$(BUILD)/obj/%.o,$(TEST_SUPPORT_SRC))

EXAMPLE_SRC := $(wildcard examples/*.cpp)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.cpp=$(BUILD)/examples/%)
EXAMPLE_OBJ := $(EXAMPLE_SRC:%.cpp=$(BUILD)/obj/%.o)

# ---- comm (MPI / NCCL): sources, flags, multi-rank tests. BEGIN comm section
# comm/'s sources join the library in the sources section above; here: MPI's flags, NCCL's library,
# and the multi-rank tests.
# Multi-rank tests: tests/mpi/test_*.cpp (GoogleTest, own main) and tests/mpi/probe_*.cpp (plain
# main, exit status checked by the script), run under mpirun by tests/run_mpi_tests.sh.
MPI_TEST_BIN :=
MPI_PROBE_BIN :=
MPI_TEST_CMD :=
ifeq ($(HAVE_MPI),1)
ifndef ONLY
  MPI_CFLAGS := $(shell $(MPICXX) --showme:compile)
  MPI_LIBS := $(shell $(MPICXX) --showme:link)
  ifeq ($(HAVE_NCCL)$(CUDA),11)
    LDLIBS += -lnccl
  endif
  # OMPI/MPICH_SKIP_MPICXX: the C API only (the deprecated C++ bindings warn under -Wextra).
  CXXFLAGS += $(MPI_CFLAGS) -DMP_MPI=1 -DOMPI_SKIP_MPICXX=1 -DMPICH_SKIP_MPICXX=1
  LDLIBS += $(MPI_LIBS)

  MPI_TEST_SRC := $(wildcard tests/mpi/test_*.cpp)
  MPI_PROBE_SRC := $(wildcard tests/mpi/probe_*.cpp)
  MPI_TEST_BIN := $(MPI_TEST_SRC:tests/mpi/%.cpp=$(BUILD)/tests/mpi/%)
  MPI_PROBE_BIN := $(MPI_PROBE_SRC:tests/mpi/%.cpp=$(BUILD)/tests/mpi/%)
  MPI_TEST_OBJ := $(MPI_TEST_SRC:%.cpp=$(BUILD)/obj/%.o) $(MPI_PROBE_SRC:%.cpp=$(BUILD)/obj/%.o)
  # ... then every example, then a 2-stage run across two network namespaces as two hosts (mpirun --hostfile).
  MPI_TEST_CMD := @bash tests/run_mpi_tests.sh $(BUILD)/tests/mpi && bash tests/run_example_smoke.sh $(BUILD) \
                  && bash tests/run_multinode_netns.sh $(BUILD)
  .PRECIOUS: $(MPI_TEST_OBJ)
  # Rules below must not become the default goal (that is `all`, defined further down).
  .DEFAULT_GOAL := all
  TOOL_BIN := $(BUILD)/tests/tools/check_run_outputs
  tests: $(MPI_TEST_BIN) $(MPI_PROBE_BIN) $(TOOL_BIN)
  mpi-tests: $(MPI_TEST_BIN) $(MPI_PROBE_BIN)
  .PHONY: mpi-tests run-mpi-tests
  run-mpi-tests: mpi-tests
	@bash tests/run_mpi_tests.sh $(BUILD)/tests/mpi

  $(MPI_TEST_BIN): $(BUILD)/tests/mpi/%: $(BUILD)/obj/tests/mpi/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) $< $(TEST_SUPPORT_OBJ) $(LIB) -lgtest $(LDLIBS) -o $@
  $(TOOL_BIN): $(BUILD)/tests/tools/%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/obj/tests/support/xml_check.o $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) $^ $(LDLIBS) -o $@
  $(MPI_PROBE_BIN): $(BUILD)/tests/mpi/%: $(BUILD)/obj/tests/mpi/%.o $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@
endif
endif
# END comm section

BENCH_SRC := $(wildcard bench/bench_*.cpp)
BENCH_BIN := $(BENCH_SRC:bench/%.cpp=$(BUILD)/bench/%)
BENCH_OBJ := $(BENCH_SRC:%.cpp=$(BUILD)/obj/%.o)
# Named explicitly so make treats them as real targets, not intermediates it may delete or skip.
.PRECIOUS: $(TEST_OBJ) $(TEST_SUPPORT_OBJ) $(BENCH_OBJ) $(EXAMPLE_OBJ)

.PHONY: all lib tests benches examples test run-tests demo bench deps clean help check-only gpu-check cpu-only-check
# The examples run under mpirun: they need MPI (comm/), as do the multi-rank tests.
all: lib $(if $(filter 1,$(HAVE_GTEST)),tests) benches $(if $(filter 1,$(HAVE_MPI)),examples)
lib: $(LIB)
tests: $(TEST_BIN)
benches: $(BENCH_BIN)
examples: $(EXAMPLE_BIN)

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/obj/%.o: %.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) -c $< -o $@

# The CPU kernels, with their flags (see CPU_KERNEL_FLAGS); the shorter stem makes make pick this rule.
$(BUILD)/obj/kernels/cpu/%.o: kernels/cpu/%.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(CPU_KERNEL_FLAGS) -c $< -o $@

# The cuDNN graphs see cudnn-frontend's headers (CUDNN_FRONTEND_FLAGS; a command-line CXXFLAGS keeps them).
$(BUILD)/obj/kernels/cudnn/%.o: kernels/cudnn/%.cpp
	@mkdir -p $(@D)
	$(CXX) $(CXXFLAGS) $(CUDNN_FRONTEND_FLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) $< $(TEST_SUPPORT_OBJ) $(LIB) -lgtest -lgtest_main $(LDLIBS) -o $@

$(BUILD)/examples/%: $(BUILD)/obj/examples/%.o $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

$(BUILD)/bench/%: $(BUILD)/obj/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# ---------------------------------------------------------------- commands
# Debian packages (installed system-wide, as root); nlohmann/json, header-only, is unpacked from
# its Debian package into .deps/include instead (no root needed), so it can be carried to an
# offline machine with the working tree. apt is given short network timeouts: an offline
# machine gets a message, not a hang. DEPS=0 makes test / demo skip this step altogether.
DEPS_PACKAGES := g++ make pkg-config openmpi-bin libopenmpi-dev libopenblas-dev libgtest-dev
APT_OFFLINE_SAFE := -o Acquire::Retries=0 -o Acquire::http::Timeout=10 -o Acquire::https::Timeout=10
DEPS ?= 1
DEPS_STEP := $(if $(filter 0,$(DEPS)),,deps)

deps: $(DEPS_DIR)/include/nlohmann/json.hpp deps-cudnn-frontend
	@missing=""; for p in $(DEPS_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps: all Debian packages present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  timeout 300 apt-get $(APT_OFFLINE_SAFE) install -y -q $$missing >/dev/null 2>&1 || \
	  { timeout 300 apt-get $(APT_OFFLINE_SAFE) update -q >/dev/null && timeout 600 apt-get $(APT_OFFLINE_SAFE) install -y -q $$missing >/dev/null; } \
	  || echo "deps: apt-get failed (offline?); the build continues with what is present"; \
	else echo "deps: missing$$missing — run: sudo apt-get install -y$$missing"; fi

# nlohmann/json 3.x from Debian's nlohmann-json3-dev (apt-get download needs no root), or a
# copy of the system's when the download fails and one is installed.
$(DEPS_DIR)/include/nlohmann/json.hpp:
	@set -e; rm -rf $(DEPS_DIR)/tmp; mkdir -p $(DEPS_DIR)/tmp $(DEPS_DIR)/include; \
	if (cd $(DEPS_DIR)/tmp && timeout 120 apt-get $(APT_OFFLINE_SAFE) download -q nlohmann-json3-dev >/dev/null 2>&1) \
	   && dpkg -x $(DEPS_DIR)/tmp/nlohmann-json3-dev_*.deb $(DEPS_DIR)/tmp/unpacked \
	   && [ -f $(DEPS_DIR)/tmp/unpacked/usr/include/nlohmann/json.hpp ]; then \
	  rm -rf $(DEPS_DIR)/include/nlohmann; cp -r $(DEPS_DIR)/tmp/unpacked/usr/include/nlohmann $(DEPS_DIR)/include/; \
	  echo "deps: nlohmann/json unpacked into $(DEPS_DIR)/include ($$(basename $(DEPS_DIR)/tmp/*.deb))"; \
	elif [ -f /usr/include/nlohmann/json.hpp ]; then \
	  cp -r /usr/include/nlohmann $(DEPS_DIR)/include/; echo "deps: nlohmann/json copied from /usr/include into $(DEPS_DIR)/include"; \
	else rm -rf $(DEPS_DIR)/tmp; echo "deps: could not fetch nlohmann/json (offline?): put json.hpp in $(DEPS_DIR)/include/nlohmann/"; exit 1; fi; \
	rm -rf $(DEPS_DIR)/tmp

# cudnn-frontend's headers from the PyPI wheel nvidia-cudnn-frontend (pip download needs no root and
# installs nothing): its include/ is unpacked into $(DEPS_DIR)/include. Optional: when it cannot be
# fetched (offline, no pip) deps says so and carries on, and attention uses the composed path.
# The version is pinned (the code is written against its API); CUDNN_FRONTEND_PIN= takes the newest.
CUDNN_FRONTEND_PIN ?= 1.32.0
PYTHON ?= python3
.PHONY: deps-cudnn-frontend
deps-cudnn-frontend:
	@if [ -f $(DEPS_DIR)/include/cudnn_frontend.h ]; then echo "deps: cudnn-frontend present in $(DEPS_DIR)/include"; exit 0; fi; \
	rm -rf $(DEPS_DIR)/tmp-cudnn-frontend; mkdir -p $(DEPS_DIR)/tmp-cudnn-frontend $(DEPS_DIR)/include; \
	tmp=$(DEPS_DIR)/tmp-cudnn-frontend; \
	if timeout 180 $(PYTHON) -m pip download -q --no-deps --only-binary=:all: --timeout 15 --retries 0 \
	     -d $$tmp "nvidia-cudnn-frontend$(if $(CUDNN_FRONTEND_PIN),==$(CUDNN_FRONTEND_PIN))" >$$tmp/pip.log 2>&1 \
	   && $(PYTHON) -m zipfile -e $$tmp/nvidia_cudnn_frontend-*.whl $$tmp/unpacked \
	   && [ -f $$tmp/unpacked/include/cudnn_frontend.h ]; then \
	  cp -r $$tmp/unpacked/include/. $(DEPS_DIR)/include/; \
	  echo "deps: cudnn-frontend headers unpacked into $(DEPS_DIR)/include ($$(basename $$tmp/*.whl))"; \
	else echo "deps: could not fetch cudnn-frontend (offline? no pip?): attention will use the composed path;" \
	          "see $$tmp/pip.log, or unpack the include/ of the nvidia-cudnn-frontend wheel into $(DEPS_DIR)/include"; \
	  exit 0; fi; \
	rm -rf $$tmp

test: $(DEPS_STEP)
	@$(MAKE) --no-print-directory run-tests

run-tests: all
	@if [ "$(HAVE_GTEST)" != 1 ]; then echo "test: GoogleTest is missing (make deps)"; exit 1; fi
	@bash tests/run_tests.sh $(TEST_BIN)
	$(MPI_TEST_CMD)
	@bash tests/run_bench_smoke.sh $(BUILD)
	@bash tests/run_gpu_check_selftest.sh $(BUILD)
	@bash tests/run_makefile_checks.sh
	@$(MAKE) --no-print-directory cpu-only-check

# A CUDA build also proves that the CPU-only build (machines without CUDA) still compiles, links
# and passes its unit tests, in its own build folder.
cpu-only-check:
	@if [ "$(CUDA)" = 1 ]; then \
	  echo "==== CPU-only build (CUDA=0) in $(BUILD)/cpu-only"; \
	  $(MAKE) --no-print-directory CUDA=0 BUILD=$(BUILD)/cpu-only tests >/dev/null && \
	  bash tests/run_tests.sh $(BUILD)/cpu-only/tests/test_*; \
	fi

check-only: $(LIB) $(TEST_BIN)
	@bash tests/run_tests.sh $(TEST_BIN)

# The main job: train_gpt under mpirun with 4 pipeline stages and 1F1B on the demo config —
# on the GPU when there is one (the 4 ranks share it over MPI), on the CPU otherwise.
DEMO_RANKS ?= 4
DEMO_ARGS ?=
MPIRUN_FLAGS := --oversubscribe $(if $(filter 0,$(shell id -u)),--allow-run-as-root)
demo: $(DEPS_STEP)
	@if [ "$(HAVE_MPI)" != 1 ]; then echo "demo: needs MPI (mpicxx, mpirun): make deps installs it"; exit 1; fi
	@$(MAKE) --no-print-directory $(BUILD)/examples/train_gpt
	OMP_WAIT_POLICY=passive mpirun $(MPIRUN_FLAGS) -x OMP_WAIT_POLICY -np $(DEMO_RANKS) $(BUILD)/examples/train_gpt \
	    --config examples/configs/demo.json $(DEMO_ARGS)

bench: benches
	@bash bench/run_bench.sh $(BUILD)/bench

# The one-shot GPU check (tools/gpu_check.sh): everything a GPU machine can prove, one report.
OUT ?= gpu-check-out
gpu-check:
	@bash tools/gpu_check.sh $(OUT)

clean:
	rm -rf $(BUILD)

help:  # the header comment: every line up to the first blank one
	@sed -n '/^$$/q;p' Makefile

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
