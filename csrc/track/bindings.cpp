// pybind11 surface of the tracker (part of the private module segpost._ext; see csrc/bindings.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <tuple>
#include <vector>

#include "tracker.h"

namespace py = pybind11;

namespace segpost {
namespace {

using EventTuple = std::tuple<int, int, int, int64_t, int64_t, int64_t, int64_t>;

std::vector<EventTuple> event_tuples(const std::vector<TrackEvent>& events) {
  std::vector<EventTuple> out;
  out.reserve(events.size());
  for (const TrackEvent& e : events) {
    out.emplace_back(static_cast<int>(e.kind), e.camera, e.class_id, e.track_id, e.first_frame, e.last_frame,
                     e.frames_seen);
  }
  return out;
}

}  // namespace

void bind_tracker(py::module_& m) {
  m.def(
      "solve_assignment",
      [](py::array_t<double, py::array::c_style | py::array::forcecast> cost, double limit) {
        if (cost.ndim() != 2) throw std::invalid_argument("cost must be a 2-D array");
        const int rows = static_cast<int>(cost.shape(0)), cols = static_cast<int>(cost.shape(1));
        Assignment assignment(rows, cols);
        py::array_t<int32_t> row_to_col(rows);
        assignment.solve(cost.data(), rows, cols, limit, row_to_col.mutable_data());
        return row_to_col;
      },
      py::arg("cost"), py::arg("limit"), "The tracker's assignment (for tests): each row's column, or -1");
  // The settings, field by field (segpost.track.TrackerConfig and the pipeline's sizes fill them by
  // name: segpost._settings.to_struct).
  py::class_<TrackerConfig>(m, "TrackerConfig")
      .def(py::init<>())
      .def_readwrite("max_cameras", &TrackerConfig::max_cameras)
      .def_readwrite("num_classes", &TrackerConfig::num_classes)
      .def_readwrite("capacity", &TrackerConfig::capacity)
      .def_readwrite("mask_h", &TrackerConfig::mask_h)
      .def_readwrite("mask_w", &TrackerConfig::mask_w)
      .def_readwrite("max_tracks", &TrackerConfig::max_tracks)
      .def_readwrite("max_age", &TrackerConfig::max_age)
      .def_readwrite("min_hits", &TrackerConfig::min_hits)
      .def_readwrite("high_score", &TrackerConfig::high_score)
      .def_readwrite("match_threshold", &TrackerConfig::match_threshold)
      .def_readwrite("mask_weight", &TrackerConfig::mask_weight)
      .def_readwrite("new_track_score", &TrackerConfig::new_track_score)
      .def_readwrite("use_cuda", &TrackerConfig::use_cuda);
  py::class_<Tracker>(m, "Tracker")
      .def(py::init<const TrackerConfig&>(), py::arg("config"))
      .def("enqueue",
           [](Tracker& self, int class_id, const RoundView& view, uintptr_t masks, int masks_dtype,
              const std::vector<int32_t>& cameras, uintptr_t stream) {
             self.enqueue(class_id, view, reinterpret_cast<const void*>(masks), static_cast<DType>(masks_dtype), cameras,
                          stream);
           })
      .def("run_cpu",
           [](Tracker& self, int class_id, const RoundView& view, uintptr_t masks, int masks_dtype,
              const std::vector<int32_t>& cameras) {
             py::gil_scoped_release release;
             self.run_cpu(class_id, view, reinterpret_cast<const void*>(masks), static_cast<DType>(masks_dtype), cameras);
           })
      .def("update",
           [](Tracker& self, const std::vector<RoundView>& views, const std::vector<int64_t>& frame_ids,
              const std::vector<int32_t>& heights, const std::vector<int32_t>& widths) {
             {
               py::gil_scoped_release release;
               self.update(views, frame_ids, heights, widths);
             }
             return event_tuples(self.events());
           })
      .def("finish", [](Tracker& self, int camera) { return event_tuples(self.finish(camera)); })
      .def("abandon_round",
           [](Tracker& self) {
             py::gil_scoped_release release;
             self.abandon_round();
           })
      .def("set_next_id", [](Tracker& self, int camera, int64_t next_id) { self.table().set_next_id(camera, next_id); })
      .def("next_id", [](Tracker& self, int camera) { return self.table().next_id(camera); })
      .def("refused", [](Tracker& self, int camera) { return self.table().refused(camera); })
      .def("live", [](Tracker& self, int camera) { return self.table().live(camera); })
      .def("track_ids",
           [](py::object owner) {
             const Tracker& t = owner.cast<const Tracker&>();
             const auto& c = t.config();
             return py::array_t<int64_t>({c.num_classes, c.capacity}, {c.capacity * 8, 8}, t.track_ids(), owner);
           })
      .def("mask_iou",
           [](py::object owner) {
             const Tracker& t = owner.cast<const Tracker&>();
             const auto& c = t.config();
             return py::array_t<float>({c.num_classes, c.capacity, c.max_tracks},
                                       {c.capacity * c.max_tracks * 4, c.max_tracks * 4, 4}, t.mask_iou(), owner);
           })
      .def("slot_plan",
           [](py::object owner) {  // for tests: (class, source_class, source_k, dx, dy) per slot
             const Tracker& t = owner.cast<const Tracker&>();
             const auto& c = t.config();
             static_assert(sizeof(SlotPlan) == 5 * sizeof(int32_t), "SlotPlan is five int32");
             return py::array_t<int32_t>({c.max_cameras * c.max_tracks, 5}, {20, 4},
                                         reinterpret_cast<const int32_t*>(t.slot_plan()), owner);
           })
      .def_property_readonly("config", [](const Tracker& t) { return t.config(); })  // a copy
      .def_property_readonly("device_bytes", &Tracker::device_bytes)
      .def_property_readonly("pinned_bytes", &Tracker::pinned_bytes)
      .def_property_readonly("host_bytes", &Tracker::host_bytes);
}

}  // namespace segpost
