#pragma once
#include "emu_cuda.h"  // tests/cuda_emu: host emulation of the CUDA API subset pyfast uses
