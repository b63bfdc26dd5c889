// CPU reference of the index range check: a plain scan that stops at the first bad value.
#include "kernels/index_check.h"

namespace mp::kernels::cpu {

int64_t first_out_of_range(const int32_t* values, int64_t n, int64_t low, int64_t high, int64_t exempt) {
    for (int64_t p = 0; p < n; ++p) {
        const int64_t value = values[p];
        if ((value < low || value >= high) && value != exempt) return p;
    }
    return -1;
}

}  // namespace mp::kernels::cpu
