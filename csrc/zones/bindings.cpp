// pybind11 surface of the zones (part of the private module segpost._ext; see csrc/bindings.cpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <stdexcept>
#include <vector>

#include "zone_masks.h"
#include "zone_rules.h"

namespace py = pybind11;

namespace segpost {

void bind_zones(py::module_& m) {
  m.attr("MAX_ZONE_VERTICES") = kMaxZoneVertices;
  m.attr("MAX_ZONE_CLASSES") = kMaxZoneClasses;
  // The sizes, field by field (segpost.zones.masks fills them by name: segpost._settings.to_struct).
  py::class_<ZoneMasksConfig>(m, "ZoneMasksConfig")
      .def(py::init<>())
      .def_readwrite("max_cameras", &ZoneMasksConfig::max_cameras)
      .def_readwrite("num_classes", &ZoneMasksConfig::num_classes)
      .def_readwrite("capacity", &ZoneMasksConfig::capacity)
      .def_readwrite("mask_h", &ZoneMasksConfig::mask_h)
      .def_readwrite("mask_w", &ZoneMasksConfig::mask_w)
      .def_readwrite("max_zones", &ZoneMasksConfig::max_zones)
      .def_readwrite("use_cuda", &ZoneMasksConfig::use_cuda);
  py::class_<ZoneMasks>(m, "ZoneMasks")
      .def(py::init<const ZoneMasksConfig&>(), py::arg("config"))
      .def("set_zones",
           [](ZoneMasks& self, int camera, const std::vector<std::vector<std::pair<float, float>>>& polygons) {
             std::vector<std::vector<ZonePoint>> points(polygons.size());
             for (size_t z = 0; z < polygons.size(); ++z) {
               for (const auto& [x, y] : polygons[z]) points[z].push_back(ZonePoint{x, y});
             }
             self.set_zones(camera, points);
           })
      .def("enqueue",
           [](ZoneMasks& self, const Tracker& tracker, const std::vector<RoundView>& views,
              const std::vector<int32_t>& cameras, int rule, uintptr_t stream) {
             self.enqueue(tracker, views, cameras, static_cast<ZoneRule>(rule), stream);
           })
      .def("run_cpu",
           [](ZoneMasks& self, const Tracker& tracker, const std::vector<RoundView>& views,
              const std::vector<int32_t>& cameras, int rule) {
             py::gil_scoped_release release;
             self.run_cpu(tracker, views, cameras, static_cast<ZoneRule>(rule));
           })
      .def("synchronize", &ZoneMasks::synchronize, py::call_guard<py::gil_scoped_release>())
      .def("overlap",
           [](py::object owner) {  // [classes, capacity, max_zones], a view of the pinned buffer
             const ZoneMasks& z = owner.cast<const ZoneMasks&>();
             const auto& c = z.config();
             return py::array_t<float>({c.num_classes, c.capacity, c.max_zones},
                                       {c.capacity * c.max_zones * 4, c.max_zones * 4, 4}, z.host_overlap(), owner);
           })
      .def("bitmap",
           [](const ZoneMasks& self, int camera, int zone) {  // for tests: the zone's cells, [mask_h, mask_w] bool
             const auto& c = self.config();
             const int words = (c.mask_w + 31) / 32;
             const uint32_t* bits = self.host_bitmap(camera, zone);
             py::array_t<bool> out({c.mask_h, c.mask_w});
             auto view = out.mutable_unchecked<2>();
             for (int y = 0; y < c.mask_h; ++y) {
               for (int x = 0; x < c.mask_w; ++x) view(y, x) = (bits[y * words + x / 32] >> (x % 32)) & 1u;
             }
             return out;
           })
      .def_property_readonly("config", [](const ZoneMasks& z) { return z.config(); })  // a copy
      .def_property_readonly("device_bytes", &ZoneMasks::device_bytes)
      .def_property_readonly("pinned_bytes", &ZoneMasks::pinned_bytes);
  py::class_<ZoneRules>(m, "ZoneRules")
      .def(py::init([](int cameras, int slots, std::vector<uint8_t> valid, std::vector<uint8_t> is_line,
                       std::vector<int32_t> col, std::vector<int32_t> col2, std::vector<float> min_overlap,
                       std::vector<int32_t> inertia, std::vector<double> dwell) {
             ZoneRulesConfig c;
             c.cameras = cameras;
             c.slots = slots;
             c.valid = std::move(valid);
             c.is_line = std::move(is_line);
             c.col = std::move(col);
             c.col2 = std::move(col2);
             c.min_overlap = std::move(min_overlap);
             c.inertia = std::move(inertia);
             c.dwell = std::move(dwell);
             return new ZoneRules(std::move(c));
           }))
      .def("add_class", &ZoneRules::add_class)
      .def("update",
           [](ZoneRules& self, int camera, int64_t frame, double time,
              py::array_t<int32_t, py::array::c_style | py::array::forcecast> cls,
              py::array_t<int64_t, py::array::c_style | py::array::forcecast> track,
              py::array_t<float, py::array::c_style | py::array::forcecast> shares, bool confirmed_only) {
             const auto n = track.size();
             if (cls.size() != n) throw std::invalid_argument("ZoneRules.update: classes and track ids differ in length");
             int columns = 0;
             if (shares.ndim() == 2) {
               if (shares.shape(0) != n) throw std::invalid_argument("ZoneRules.update: shares must have a row per detection");
               columns = static_cast<int>(shares.shape(1));
             } else if (n != 0) {
               throw std::invalid_argument("ZoneRules.update: shares must be [detections, regions]");
             }
             self.update(camera, frame, time, static_cast<int>(n), cls.data(), track.data(), shares.data(), columns,
                         confirmed_only);
           })
      .def("update_batch",
           [](ZoneRules& self, py::array_t<int32_t, py::array::c_style | py::array::forcecast> camera,
              py::array_t<int64_t, py::array::c_style | py::array::forcecast> frame,
              py::array_t<double, py::array::c_style | py::array::forcecast> time,
              py::array_t<int32_t, py::array::c_style | py::array::forcecast> klass,
              py::array_t<int32_t, py::array::c_style | py::array::forcecast> counts,
              py::array_t<int64_t, py::array::c_style | py::array::forcecast> tracks,
              py::array_t<float, py::array::c_style | py::array::forcecast> shares, bool confirmed_only) {
             const auto frames = camera.size(), classes = klass.size();
             if (frame.size() != frames || time.size() != frames) {
               throw std::invalid_argument("ZoneRules.update_batch: cameras, frames and times differ in length");
             }
             if (counts.ndim() != 2 || counts.shape(0) != classes || counts.shape(1) != frames) {
               throw std::invalid_argument("ZoneRules.update_batch: counts must be [classes, frames]");
             }
             if (tracks.ndim() != 2 || tracks.shape(0) != classes) {
               throw std::invalid_argument("ZoneRules.update_batch: track ids must be [classes, rows]");
             }
             if (shares.ndim() != 3 || shares.shape(0) != classes) {
               throw std::invalid_argument("ZoneRules.update_batch: shares must be [classes, rows, regions]");
             }
             self.update_batch(static_cast<int>(frames), camera.data(), frame.data(), time.data(),
                               static_cast<int>(classes), klass.data(), counts.data(), tracks.data(),
                               static_cast<int>(tracks.shape(1)), shares.data(), static_cast<int>(shares.shape(1)),
                               static_cast<int>(shares.shape(2)), confirmed_only);
           })
      .def("confirm", &ZoneRules::confirm)
      .def("live_tracks", &ZoneRules::live_tracks)
      .def("take_events",
           [](ZoneRules& self) {  // [(kind, camera, slot, class, track, value, frame, time, seconds)]
             py::list out;
             for (const auto& e : self.take_events()) {
               out.append(py::make_tuple(e.kind, e.camera, e.slot, e.cls, e.track, e.value, e.frame, e.time, e.seconds));
             }
             return out;
           })
      .def("end_track",
           [](ZoneRules& self, int camera, int64_t track) {
             py::list out;
             for (const auto& e : self.end_track(camera, track)) {
               out.append(py::make_tuple(e.kind, e.camera, e.slot, e.cls, e.track, e.value, e.frame, e.time, e.seconds));
             }
             return out;
           })
      .def_property_readonly("live_rows", &ZoneRules::live_rows);
}

}  // namespace segpost
