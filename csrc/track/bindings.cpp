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
  py::class_<Tracker>(m, "Tracker")
      .def(py::init([](int max_cameras, int num_classes, int capacity, int mask_h, int mask_w, int max_tracks,
                       int max_age, int min_hits, float high_score, float match_threshold, float mask_weight,
                       float new_track_score, bool use_cuda) {
             TrackerConfig c;
             c.max_cameras = max_cameras;
             c.num_classes = num_classes;
             c.capacity = capacity;
             c.mask_h = mask_h;
             c.mask_w = mask_w;
             c.max_tracks = max_tracks;
             c.max_age = max_age;
             c.min_hits = min_hits;
             c.high_score = high_score;
             c.match_threshold = match_threshold;
             c.mask_weight = mask_weight;
             c.new_track_score = new_track_score;
             c.use_cuda = use_cuda;
             return new Tracker(c);
           }),
           py::arg("max_cameras"), py::arg("num_classes"), py::arg("capacity"), py::arg("mask_h"), py::arg("mask_w"),
           py::arg("max_tracks"), py::arg("max_age"), py::arg("min_hits"), py::arg("high_score"),
           py::arg("match_threshold"), py::arg("mask_weight"), py::arg("new_track_score"), py::arg("use_cuda"))
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
      .def_property_readonly("device_bytes", &Tracker::device_bytes)
      .def_property_readonly("pinned_bytes", &Tracker::pinned_bytes)
      .def_property_readonly("host_bytes", &Tracker::host_bytes);
}

}  // namespace segpost
