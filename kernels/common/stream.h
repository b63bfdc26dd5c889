// Forward declaration of cudaStream_t so kernel headers can name a stream without
// pulling in the CUDA runtime (CPU-only builds include these headers too).
// This is the same typedef the CUDA runtime makes; repeating it is legal C++.
#pragma once

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
