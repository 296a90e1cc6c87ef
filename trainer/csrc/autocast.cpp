// libtorch's per-device autocast switch and dtype, which tch 0.24 does not expose (its `autocast`
// flips only the legacy CUDA switch, whose dtype is float16). Called from src/autocast.rs.
// Every function catches C++ exceptions: none may unwind into Rust.
#include <ATen/autocast_mode.h>
#include <cstdint>

namespace {
at::DeviceType device_type(bool cuda) { return cuda ? at::kCUDA : at::kCPU; }
}  // namespace

extern "C" {

// Turns bf16 autocast on for CPU (`cuda` false) or CUDA and opens one nesting level; writes what
// `fer_autocast_exit` must restore. Returns false if libtorch threw.
bool fer_autocast_bf16_enter(bool cuda, bool* prev_enabled, int8_t* prev_dtype) {
  try {
    const auto d = device_type(cuda);
    *prev_enabled = at::autocast::is_autocast_enabled(d);
    *prev_dtype = static_cast<int8_t>(at::autocast::get_autocast_dtype(d));
    at::autocast::set_autocast_enabled(d, true);
    at::autocast::set_autocast_dtype(d, at::kBFloat16);
    at::autocast::increment_nesting();
    return true;
  } catch (...) {
    return false;
  }
}

// Closes the level `fer_autocast_bf16_enter` opened: the cast-weight cache is dropped when the
// outermost level closes (as torch.autocast's __exit__), then the previous state comes back.
bool fer_autocast_exit(bool cuda, bool prev_enabled, int8_t prev_dtype) {
  try {
    const auto d = device_type(cuda);
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_dtype(d, static_cast<at::ScalarType>(prev_dtype));
    at::autocast::set_autocast_enabled(d, prev_enabled);
    return true;
  } catch (...) {
    return false;
  }
}

// Whether autocast is on for the device, and in bf16.
bool fer_autocast_bf16_active(bool cuda) {
  try {
    const auto d = device_type(cuda);
    return at::autocast::is_autocast_enabled(d) && at::autocast::get_autocast_dtype(d) == at::kBFloat16;
  } catch (...) {
    return false;
  }
}

}  // extern "C"
