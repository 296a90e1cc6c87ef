// Points a parameter's `.grad` at a tensor of our choosing (PyTorch's `p.grad = g`), which tch 0.24
// does not expose. src/optim.rs makes every gradient a view into one flat buffer, so autograd
// accumulates into it in place and an optimiser step needs no per-parameter gather or zeroing.
// Catches C++ exceptions: none may unwind into Rust.
#include <ATen/core/Tensor.h>

extern "C" {

// `param` and `grad` are tch's tensor handles (at::Tensor*). Returns false if libtorch threw.
bool fer_set_grad(void* param, const void* grad) {
  try {
    static_cast<at::Tensor*>(param)->mutable_grad() = *static_cast<const at::Tensor*>(grad);
    return true;
  } catch (...) {
    return false;
  }
}

}  // extern "C"
