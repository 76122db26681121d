// pybind11 surface of the private module segpost._ext: raw pointers (as integers), dtypes,
// shapes already validated by the Python layer, and the caller's stream handle.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "postprocess/postprocessor.h"
#include "postprocess/rle.h"
#include "preprocess/preprocess.h"
#include "gate/gate.h"

namespace py = pybind11;
using segpost::Batch;

namespace segpost {
void bind_tracker(py::module_& m);  // track/bindings.cpp
void bind_zones(py::module_& m);    // zones/bindings.cpp
}
using segpost::DType;

namespace {

Batch make_batch(uintptr_t logits, int logits_dtype, uintptr_t presence, int presence_dtype, uintptr_t boxes,
                 int boxes_dtype, uintptr_t masks, int masks_dtype, const std::vector<int>& heights,
                 const std::vector<int>& widths) {
  if (heights.size() != widths.size() || heights.empty() || heights.size() > segpost::kMaxFrames) {
    throw std::invalid_argument("segpost.Postprocessor: frame sizes must be 1 to 64 (H, W) pairs");
  }
  Batch b;
  b.logits = reinterpret_cast<const void*>(logits);
  b.logits_dtype = static_cast<DType>(logits_dtype);
  b.presence = reinterpret_cast<const void*>(presence);
  b.presence_dtype = static_cast<DType>(presence_dtype);
  b.boxes = reinterpret_cast<const void*>(boxes);
  b.boxes_dtype = static_cast<DType>(boxes_dtype);
  b.masks = reinterpret_cast<const void*>(masks);
  b.masks_dtype = static_cast<DType>(masks_dtype);
  b.num_frames = static_cast<int32_t>(heights.size());
  for (size_t f = 0; f < heights.size(); ++f) {
    b.sizes.height[f] = heights[f];
    b.sizes.width[f] = widths[f];
  }
  return b;
}

// One frame per tuple: (format, plane pointers x3, pitches x3, height, width, matrix, full_range).
using FrameTuple = std::tuple<int, uintptr_t, uintptr_t, uintptr_t, int64_t, int64_t, int64_t, int, int, int, bool>;

segpost::PreprocessBatch make_preprocess_batch(const std::vector<FrameTuple>& frames) {
  if (frames.empty() || frames.size() > segpost::kMaxFrames) {
    throw std::invalid_argument("segpost.Preprocessor: 1 to 64 frames");
  }
  segpost::PreprocessBatch batch{};
  batch.num_frames = static_cast<int32_t>(frames.size());
  for (size_t b = 0; b < frames.size(); ++b) {
    const auto& [format, p0, p1, p2, s0, s1, s2, height, width, matrix, full_range] = frames[b];
    const auto pixel_format = static_cast<segpost::PixelFormat>(format);
    const int planes = pixel_format == segpost::PixelFormat::BGR ? 1 : pixel_format == segpost::PixelFormat::NV12 ? 2 : 3;
    const int64_t min_pitch = pixel_format == segpost::PixelFormat::BGR ? 3 * static_cast<int64_t>(width) : width;
    const bool yuv = pixel_format != segpost::PixelFormat::BGR;
    if (format < 0 || format > 2 || p0 == 0 || (planes > 1 && p1 == 0) || (planes > 2 && p2 == 0) || height < 1 ||
        width < 1 || s0 < min_pitch || (yuv && (height % 2 || width % 2)) || matrix < 0 || matrix > 1) {
      throw std::invalid_argument("segpost.Preprocessor: frame " + std::to_string(b) + " is null or has a bad shape");
    }
    batch.frames[b] = segpost::FrameSource{
        {reinterpret_cast<const uint8_t*>(p0), reinterpret_cast<const uint8_t*>(p1), reinterpret_cast<const uint8_t*>(p2)},
        {s0, s1, s2},
        height,
        width,
        pixel_format,
        segpost::yuv_to_rgb(static_cast<segpost::YuvMatrix>(matrix), full_range)};
  }
  return batch;
}

segpost::PreprocessOutput make_output(uintptr_t out, int out_h, int out_w, int out_dtype) {
  return segpost::PreprocessOutput{reinterpret_cast<void*>(out), out_h, out_w, static_cast<DType>(out_dtype)};
}

segpost::AntialiasScratch make_scratch(uintptr_t taps, int max_taps, int max_out, uintptr_t horizontal, int max_frame_h) {
  return segpost::AntialiasScratch{reinterpret_cast<int32_t*>(taps), max_taps, max_out,
                                   reinterpret_cast<uint8_t*>(horizontal), max_frame_h};
}

py::array_t<uint8_t> byte_view(py::object owner, void* data, int64_t bytes) {
  return py::array_t<uint8_t>({bytes}, {int64_t{1}}, static_cast<uint8_t*>(data), owner);
}

// A result block's byte offsets by field name (layout.h's ResultLayout).
py::dict layout_dict(const segpost::ResultLayout& l) {
  py::dict d;
  d["header"] = l.header;
  d["frame"] = l.frame;
  d["query"] = l.query;
  d["score"] = l.score;
  d["box"] = l.box;
  d["mask_offset"] = l.mask_offset;
  d["mask_length"] = l.mask_length;
  d["window"] = l.window;
  d["bytes"] = l.bytes;
  return d;
}

// segpost.Postprocessor.round_view()'s object (postprocess/round_view.h): read-only, addresses as ints.
void bind_round_view(py::module_& m) {
  using segpost::RoundView;
  const auto address = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  py::class_<RoundView>(m, "RoundView", "A class-batch's results as the tracker reads them (csrc/postprocess/round_view.h)")
      .def_property_readonly("masks", [address](const RoundView& v) { return address(v.masks); })
      .def_property_readonly("masks_dtype", [](const RoundView& v) { return static_cast<int>(v.masks_dtype); })
      .def_readonly("num_frames", &RoundView::num_frames)
      .def_property_readonly("frame_sizes",
                             [](const RoundView& v) {
                               py::list sizes;
                               for (int32_t f = 0; f < v.num_frames; ++f) {
                                 sizes.append(py::make_tuple(v.sizes.height[f], v.sizes.width[f]));
                               }
                               return sizes;
                             })
      .def_readonly("num_queries", &RoundView::num_queries)
      .def_property_readonly("mask_size", [](const RoundView& v) { return py::make_tuple(v.mask_h, v.mask_w); })
      .def_property_readonly("mask_mode", [](const RoundView& v) { return static_cast<int>(v.mask_mode); })
      .def_readonly("mask_threshold", &RoundView::mask_threshold)
      .def_readonly("capacity", &RoundView::capacity)
      .def_readonly("use_cuda", &RoundView::use_cuda)
      .def_property_readonly("layout", [](const RoundView& v) { return layout_dict(v.layout); })
      .def_property_readonly("device_results", [address](const RoundView& v) { return address(v.device_results); })
      .def_property_readonly("host_results", [address](const RoundView& v) { return address(v.host_results); });
}

}  // namespace

PYBIND11_MODULE(_ext, m) {
  m.doc() = "segpost's compiled core (private; use segpost.Postprocessor)";
  m.attr("MAX_FRAMES") = segpost::kMaxFrames;
  m.def("built_with_cuda", &segpost::built_with_cuda);
  m.def(
      "coco_rle_string",
      [](py::array_t<int32_t, py::array::c_style> counts) {
        return py::bytes(segpost::coco_rle_string(counts.data(), counts.size()));
      },
      py::arg("counts"), "pycocotools' compressed RLE string of uncompressed run lengths");
  m.def(
      "resize_lowres_cpu",
      [](py::array_t<float, py::array::c_style> lowres, int height, int width, float threshold) {
        if (lowres.ndim() != 2) throw std::invalid_argument("lowres must be a 2-D (mask_h, mask_w) array");
        if (height < 1 || width < 1) throw std::invalid_argument("frame size must be positive");
        segpost::MaskParams params{0, static_cast<int32_t>(lowres.shape(0)), static_cast<int32_t>(lowres.shape(1)),
                                   segpost::MaskMode::Logit, threshold, 8, segpost::MaskForm::Frame};
        py::array_t<uint8_t> out({height, width});
        std::vector<segpost::LinearTap> taps(static_cast<size_t>(width));
        segpost::resize_binarize_cpu(lowres.data(), params, height, width, segpost::Window{0, 0, width, height},
                                     taps.data(), out.mutable_data());
        return out;
      },
      py::arg("lowres"), py::arg("height"), py::arg("width"), py::arg("threshold"),
      "One low-res map resized and binarized exactly as the Postprocessor does (the CPU twin's math)");
  m.def("mask_stride_bytes", &segpost::mask_stride_bytes, py::arg("height"), py::arg("width"), py::arg("bits_per_pixel"));
  m.def("cuda_device_count", &segpost::cuda_device_count);
  m.def("cuda_free_memory", &segpost::cuda_free_memory);

  m.def("aa_max_taps", &segpost::aa_max_taps, py::arg("in_size"), py::arg("out_size"),
        "Most taps an output sample of the antialias filter reads along an axis");
  m.def(
      "preprocess_cpu",
      [](const std::vector<FrameTuple>& frames, uintptr_t out, int out_h, int out_w, int out_dtype, int filter,
         uintptr_t taps, int max_taps, int max_out, uintptr_t horizontal, int max_frame_h) {
        const auto batch = make_preprocess_batch(frames);
        py::gil_scoped_release release;
        segpost::preprocess_cpu(batch, make_output(out, out_h, out_w, out_dtype), static_cast<segpost::ResizeFilter>(filter),
                                make_scratch(taps, max_taps, max_out, horizontal, max_frame_h));
      });
  m.def("preprocess_cuda", [](const std::vector<FrameTuple>& frames, uintptr_t out, int out_h, int out_w, int out_dtype,
                              int filter, uintptr_t taps, int max_taps, int max_out, uintptr_t horizontal,
                              int max_frame_h, uintptr_t stream) {
#if SEGPOST_WITH_CUDA
    segpost::preprocess_cuda(make_preprocess_batch(frames), make_output(out, out_h, out_w, out_dtype),
                             static_cast<segpost::ResizeFilter>(filter),
                             make_scratch(taps, max_taps, max_out, horizontal, max_frame_h), reinterpret_cast<void*>(stream));
#else
    throw std::runtime_error("segpost was built without CUDA (no CUDA compiler was found at install time)");
#endif
  });

  // The settings, field by field (segpost.postprocess_config.PostprocessConfig fills them by name:
  // segpost._settings.to_struct); a new option is one struct field, one line here and one declaration.
  py::class_<segpost::Config>(m, "PostprocessorConfig")
      .def(py::init<>())
      .def_readwrite("max_frames", &segpost::Config::max_frames)
      .def_readwrite("num_queries", &segpost::Config::num_queries)
      .def_readwrite("mask_h", &segpost::Config::mask_h)
      .def_readwrite("mask_w", &segpost::Config::mask_w)
      .def_readwrite("capacity", &segpost::Config::capacity)
      .def_readwrite("max_frame_h", &segpost::Config::max_frame_h)
      .def_readwrite("max_frame_w", &segpost::Config::max_frame_w)
      .def_readwrite("score_threshold", &segpost::Config::score_threshold)
      .def_readwrite("mask_threshold", &segpost::Config::mask_threshold)
      .def_property(  // enums cross as their int codes (csrc/common.h)
          "mask_mode", [](const segpost::Config& c) { return static_cast<int>(c.mask_mode); },
          [](segpost::Config& c, int v) { c.mask_mode = static_cast<segpost::MaskMode>(v); })
      .def_readwrite("top_k", &segpost::Config::top_k)
      .def_readwrite("use_cuda", &segpost::Config::use_cuda)
      .def_readwrite("masks_on_device", &segpost::Config::masks_on_device)
      .def_readwrite("mask_bits", &segpost::Config::mask_bits)
      .def_readwrite("rle_capacity", &segpost::Config::rle_capacity)
      .def_property(
          "mask_form", [](const segpost::Config& c) { return static_cast<int>(c.mask_form); },
          [](segpost::Config& c, int v) { c.mask_form = static_cast<segpost::MaskForm>(v); });

  py::class_<segpost::Postprocessor>(m, "Postprocessor")
      .def(py::init<const segpost::Config&>(), py::arg("config"))
      .def("enqueue",
           [](segpost::Postprocessor& self, uintptr_t logits, int logits_dtype, uintptr_t presence, int presence_dtype,
              uintptr_t boxes, int boxes_dtype, uintptr_t masks, int masks_dtype, const std::vector<int>& heights,
              const std::vector<int>& widths, uintptr_t stream) {
             self.enqueue(make_batch(logits, logits_dtype, presence, presence_dtype, boxes, boxes_dtype, masks,
                                     masks_dtype, heights, widths),
                          stream);
           })
      .def("run_cpu",
           [](segpost::Postprocessor& self, uintptr_t logits, int logits_dtype, uintptr_t presence, int presence_dtype,
              uintptr_t boxes, int boxes_dtype, uintptr_t masks, int masks_dtype, const std::vector<int>& heights,
              const std::vector<int>& widths) {
             const Batch b = make_batch(logits, logits_dtype, presence, presence_dtype, boxes, boxes_dtype, masks,
                                        masks_dtype, heights, widths);
             py::gil_scoped_release release;
             self.run_cpu(b);
           })
      .def("synchronize", &segpost::Postprocessor::synchronize, py::call_guard<py::gil_scoped_release>())
      .def(
          "round_view",
          [](segpost::Postprocessor& self, bool synchronize) {
            if (synchronize) {
              py::gil_scoped_release release;
              self.synchronize();
            }
            return self.round_view();
          },
          py::arg("synchronize") = false, py::keep_alive<0, 1>(),  // the view points into this Postprocessor
          "The last batch's RoundView; synchronize: wait for the batch first (its host results)")
      .def("host_results",
           [](py::object self) {
             auto& p = self.cast<segpost::Postprocessor&>();
             return byte_view(self, p.host_results(), static_cast<int64_t>(p.layout().bytes));
           })
      .def("host_masks",
           [](py::object self) {
             auto& p = self.cast<segpost::Postprocessor&>();
             if (!p.host_masks()) throw std::runtime_error("masks are on the device for this Postprocessor");
             return byte_view(self, p.host_masks(), p.mask_buffer_bytes());
           })
      .def_property_readonly("device_masks_ptr",
                             [](const segpost::Postprocessor& p) { return reinterpret_cast<uintptr_t>(p.device_masks()); })
      .def_property_readonly("layout", [](const segpost::Postprocessor& p) { return layout_dict(p.layout()); })
      .def_property_readonly("config", [](const segpost::Postprocessor& p) { return p.config(); })  // a copy
      .def_property_readonly("mask_buffer_bytes", &segpost::Postprocessor::mask_buffer_bytes)
      .def_property_readonly("device_bytes", &segpost::Postprocessor::device_bytes)
      .def_property_readonly("pinned_bytes", &segpost::Postprocessor::pinned_bytes)
      .def_property_readonly("host_bytes", &segpost::Postprocessor::host_bytes);

  bind_round_view(m);
  segpost::bind_tracker(m);
  segpost::bind_zones(m);

  // The change gate (segpost.gate): frames as the Preprocessor's tuples; grids [B, rows * cols] int32.
  const auto gate_batch = [](const std::vector<FrameTuple>& frames, int rows, int cols) {
    const auto frames_batch = make_preprocess_batch(frames);
    segpost::GateBatch batch{};
    batch.num_frames = frames_batch.num_frames;
    for (int b = 0; b < batch.num_frames; ++b) {
      batch.frames[b] = frames_batch.frames[b];
      if (batch.frames[b].height < rows || batch.frames[b].width < cols) {
        throw std::invalid_argument("segpost.ChangeGate: frame " + std::to_string(b) + " is smaller than the grid");
      }
    }
    return batch;
  };
  m.def("gate_grid_cpu", [gate_batch](const std::vector<FrameTuple>& frames, int rows, int cols, uintptr_t grids) {
    const auto batch = gate_batch(frames, rows, cols);
    py::gil_scoped_release release;
    segpost::gate_grid_cpu(batch, segpost::GateGrid{rows, cols}, reinterpret_cast<int32_t*>(grids));
  });
  m.def("gate_compare_cpu", [](uintptr_t grids, uintptr_t refs, uintptr_t ref_index, int num_frames, int rows, int cols,
                               int threshold, uintptr_t changed) {
    py::gil_scoped_release release;
    segpost::gate_compare_cpu(reinterpret_cast<const int32_t*>(grids), reinterpret_cast<const int32_t*>(refs),
                              reinterpret_cast<const int32_t*>(ref_index), num_frames, segpost::GateGrid{rows, cols},
                              threshold, reinterpret_cast<int32_t*>(changed));
  });
  m.def("gate_grid_cuda", [gate_batch](const std::vector<FrameTuple>& frames, int rows, int cols, uintptr_t grids,
                                       uintptr_t stream) {
#if SEGPOST_WITH_CUDA
    segpost::gate_grid_cuda(gate_batch(frames, rows, cols), segpost::GateGrid{rows, cols},
                            reinterpret_cast<int32_t*>(grids), reinterpret_cast<void*>(stream));
#else
    (void)gate_batch; (void)frames; (void)rows; (void)cols; (void)grids; (void)stream;
    throw std::runtime_error("segpost was built without CUDA (no CUDA compiler was found at install time)");
#endif
  });
  m.def("gate_compare_cuda", [](uintptr_t grids, uintptr_t refs, uintptr_t ref_index, int num_frames, int rows,
                                int cols, int threshold, uintptr_t changed, uintptr_t stream) {
#if SEGPOST_WITH_CUDA
    segpost::gate_compare_cuda(reinterpret_cast<const int32_t*>(grids), reinterpret_cast<const int32_t*>(refs),
                               reinterpret_cast<const int32_t*>(ref_index), num_frames, segpost::GateGrid{rows, cols},
                               threshold, reinterpret_cast<int32_t*>(changed), reinterpret_cast<void*>(stream));
#else
    (void)grids; (void)refs; (void)ref_index; (void)num_frames; (void)rows; (void)cols; (void)threshold; (void)changed; (void)stream;
    throw std::runtime_error("segpost was built without CUDA (no CUDA compiler was found at install time)");
#endif
  });

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const std::invalid_argument& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });
}
