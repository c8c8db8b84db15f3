// Host emulation of the CUDA grid for sbf_fill.cu (see emulate_host.cpp): the launch loop sets
// these before each "thread" runs the kernel body to completion. The kernels use no shared
// memory, barriers or atomics, so running threads one after another is a faithful schedule.
#ifndef SBF_EMULATE_GRID_H
#define SBF_EMULATE_GRID_H
struct sbf_dim3 { unsigned x, y, z; };
extern sbf_dim3 sbf_blockIdx, sbf_threadIdx, sbf_blockDim, sbf_gridDim;
// how many whole-block vector stores the kernels made (sbf_store_vector); read by the tests
extern long long sbf_host_vector_stores;
#define SBF_TID ((sbf_i64)sbf_blockIdx.x * (sbf_i64)sbf_blockDim.x + (sbf_i64)sbf_threadIdx.x)
#define SBF_NTHREADS ((sbf_i64)sbf_gridDim.x * (sbf_i64)sbf_blockDim.x)
#endif
