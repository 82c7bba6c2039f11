#pragma once
#include "emu_cuda.h"  // tools/cuda_emu: host emulation of the CUDA API subset pyfast uses
