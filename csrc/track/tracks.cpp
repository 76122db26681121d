#include "tracks.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "require.h"

namespace segpost {
namespace {

// Most camera frames one prediction spans (a camera unseen for minutes is not extrapolated further).
constexpr int64_t kMaxGap = 1000;
// The gap stage's reach: an object goes at most this share of its size per frame.
constexpr double kGapSpeed = 0.5;

template <class Message>
void require(bool ok, Message&& message) {
  require_argument(ok, "segpost.Tracker", message);
}

bool in_unit(float v) { return v >= 0.0f && v <= 1.0f; }  // false for NaN

BoxKalman::Vec4 measurement(const float* box) {
  return {0.5 * (box[0] + box[2]), 0.5 * (box[1] + box[3]), std::max(box[2] - box[0], 1.0f),
          std::max(box[3] - box[1], 1.0f)};
}

// IoU of an xyxy detection box and a track's predicted box.
double box_iou(const float* box, const BoxKalman& k) {
  const double ax0 = k.cx() - 0.5 * k.width(), ay0 = k.cy() - 0.5 * k.height();
  const double ax1 = ax0 + k.width(), ay1 = ay0 + k.height();
  const double w = std::min<double>(ax1, box[2]) - std::max<double>(ax0, box[0]);
  const double h = std::min<double>(ay1, box[3]) - std::max<double>(ay0, box[1]);
  if (w <= 0 || h <= 0) return 0.0;
  const double inter = w * h;
  const double uni = k.width() * k.height() + static_cast<double>(box[2] - box[0]) * (box[3] - box[1]) - inter;
  return uni > 0 ? inter / uni : 0.0;
}

// Whole low-res pixels a pixel displacement amounts to, bounded so that it stays an int.
int32_t lowres_shift(double pixels, int32_t map_size, int32_t frame_size) {
  const double v = pixels * map_size / std::max(frame_size, 1);
  return static_cast<int32_t>(std::lround(std::clamp(v, -2.0 * map_size, 2.0 * map_size)));
}

}  // namespace

TrackerConfig validated(const TrackerConfig& c) {
  require(c.max_cameras >= 1 && c.max_cameras <= kMaxFrames,
          [&] { return "cameras must be in [1, " + std::to_string(kMaxFrames) + "]"; });
  require(c.num_classes >= 1, "at least one class");
  require(c.capacity >= 1 && c.capacity <= 65535, "capacity must be in [1, 65535]");
  require(c.mask_h >= 1 && c.mask_w >= 1 && static_cast<int64_t>(c.mask_h) * c.mask_w <= (1 << 24),
          "mask_size must be positive and at most 2^24 pixels");
  require(c.max_tracks >= 1 && c.max_tracks <= 4096, "max_tracks must be in [1, 4096]");
  require(c.max_age >= 0, "max_age must be >= 0");
  require(c.min_hits >= 1, "min_hits must be >= 1");
  require(in_unit(c.high_score), "high_score must be in [0, 1]");
  require(in_unit(c.match_threshold) && c.match_threshold > 0.0f, "match_threshold must be in (0, 1]");
  require(in_unit(c.mask_weight), "mask_weight must be in [0, 1]");
  require(in_unit(c.new_track_score), "new_track_score must be in [0, 1]");
  return c;
}

TrackTable::TrackTable(const TrackerConfig& config)
    : config_(validated(config)),
      tracks_(static_cast<size_t>(config.max_cameras) * config.max_tracks),
      next_id_(config.max_cameras, 1),
      refused_(config.max_cameras, 0),
      last_frame_id_(config.max_cameras, -1),
      last_gap_(config.max_cameras, 1),
      assignment_(config.capacity, config.max_tracks) {
  rows_.reserve(config_.capacity);
  cols_.reserve(config_.max_tracks);
  row_to_col_.resize(config_.capacity);
  cost_.resize(static_cast<size_t>(config_.capacity) * config_.max_tracks);
}

void TrackTable::camera_frame(int32_t camera, int64_t frame_id, int32_t width, int32_t height,
                              const std::vector<FrameDetections>& classes, int64_t* ids,
                              std::vector<TrackEvent>& events) {
  // The frames since this camera's last one (1 when ids are not increasing: a restarted source).
  const int64_t previous = last_frame_id_[camera];
  const int64_t gap = previous >= 0 && frame_id > previous ? std::min<int64_t>(frame_id - previous, kMaxGap) : 1;
  last_frame_id_[camera] = frame_id;
  last_gap_[camera] = gap;
  for (int s = 0; s < config_.max_tracks; ++s) {
    Track& t = slot(camera, s);
    t.matched = false;
    if (t.state == State::Free) continue;
    for (int64_t step = 0; step < gap; ++step) t.kalman.predict(t.state == State::Lost);
    t.kalman.keep_centre_inside(width, height);
  }
  for (int32_t c = 0; c < config_.num_classes; ++c) {
    const FrameDetections& d = classes[c];
    std::fill(ids + static_cast<int64_t>(c) * config_.capacity + d.first,
              ids + static_cast<int64_t>(c) * config_.capacity + d.first + d.count, int64_t{-1});
    match_stage(camera, d, c, true, frame_id, ids, events);
    match_stage(camera, d, c, false, frame_id, ids, events);
    if (gap > 1) gap_stage(camera, d, c, gap, frame_id, ids, events);
  }
  for (int s = 0; s < config_.max_tracks; ++s) {  // the unmatched age (before new tracks take slots)
    Track& t = slot(camera, s);
    if (t.state == State::Free || t.matched) continue;
    if (t.state == State::Tentative) {
      t = Track{};  // its id stays used
      continue;
    }
    t.state = State::Lost;
    if (++t.misses > config_.max_age) end_track(t, camera, events);
  }
  for (int32_t c = 0; c < config_.num_classes; ++c) {
    const FrameDetections& d = classes[c];
    int64_t* class_ids = ids + static_cast<int64_t>(c) * config_.capacity;
    for (int32_t k = d.first; k < d.first + d.count; ++k) {
      if (class_ids[k] < 0 && d.scores[k] >= config_.new_track_score) {
        start_track(camera, c, k, d.boxes + 4 * k, frame_id, ids, events);
      }
    }
  }
  for (int s = 0; s < config_.max_tracks; ++s) {
    Track& t = slot(camera, s);
    if (t.state == State::Free) continue;
    // The next frame's predicted centre (inside the frame, as predict keeps it), relative to
    // where the slot's mask was taken; the next frame is expected as far off as this one was.
    const double next_x = std::clamp(t.kalman.cx() + gap * t.kalman.vx(), 0.0, static_cast<double>(width));
    const double next_y = std::clamp(t.kalman.cy() + gap * t.kalman.vy(), 0.0, static_cast<double>(height));
    t.dx = lowres_shift(next_x - t.mask_cx, config_.mask_w, width);
    t.dy = lowres_shift(next_y - t.mask_cy, config_.mask_h, height);
  }
}

void TrackTable::match_stage(int32_t camera, const FrameDetections& d, int32_t class_id, bool high,
                             int64_t frame_id, int64_t* ids, std::vector<TrackEvent>& events) {
  int64_t* class_ids = ids + static_cast<int64_t>(class_id) * config_.capacity;
  rows_.clear();
  cols_.clear();
  for (int32_t k = d.first; k < d.first + d.count; ++k) {
    if ((d.scores[k] >= config_.high_score) == high && class_ids[k] < 0) rows_.push_back(k);
  }
  for (int32_t s = 0; s < config_.max_tracks; ++s) {
    const Track& t = slot(camera, s);
    // First stage: every track of the class; second: the confirmed and lost tracks the first left
    // unmatched (an object coming back is partly visible, so it scores low; tentative tracks are
    // not continued by low scores).
    if (t.state != State::Free && t.class_id == class_id && !t.matched && (high || t.state != State::Tentative)) {
      cols_.push_back(s);
    }
  }
  const int rows = static_cast<int>(rows_.size()), cols = static_cast<int>(cols_.size());
  if (rows == 0 || cols == 0) return;
  const double w = config_.mask_weight;
  for (int i = 0; i < rows; ++i) {
    const int32_t k = rows_[i];
    for (int j = 0; j < cols; ++j) {
      const double mask = d.mask_iou[static_cast<int64_t>(k) * config_.max_tracks + cols_[j]];
      const double similarity = (1.0 - w) * box_iou(d.boxes + 4 * k, slot(camera, cols_[j]).kalman) + w * mask;
      cost_[static_cast<size_t>(i) * cols + j] = 1.0 - similarity;
    }
  }
  assignment_.solve(cost_.data(), rows, cols, 1.0 - static_cast<double>(config_.match_threshold), row_to_col_.data());
  for (int i = 0; i < rows; ++i) {
    if (row_to_col_[i] < 0) continue;
    Track& t = slot(camera, cols_[row_to_col_[i]]);
    const int32_t k = rows_[i];
    apply_match(t, camera, class_id, k, d.boxes + 4 * k, d.scores[k], frame_id, events);
    class_ids[k] = t.id;
  }
}

void TrackTable::gap_stage(int32_t camera, const FrameDetections& d, int32_t class_id, int64_t gap,
                           int64_t frame_id, int64_t* ids, std::vector<TrackEvent>& events) {
  int64_t* class_ids = ids + static_cast<int64_t>(class_id) * config_.capacity;
  rows_.clear();
  cols_.clear();
  for (int32_t k = d.first; k < d.first + d.count; ++k) {
    if (class_ids[k] < 0) rows_.push_back(k);
  }
  for (int32_t s = 0; s < config_.max_tracks; ++s) {
    const Track& t = slot(camera, s);
    if (t.state != State::Free && t.class_id == class_id && !t.matched) cols_.push_back(s);
  }
  const int rows = static_cast<int>(rows_.size()), cols = static_cast<int>(cols_.size());
  if (rows == 0 || cols == 0) return;
  for (int i = 0; i < rows; ++i) {
    const int32_t k = rows_[i];
    const BoxKalman::Vec4 z = measurement(d.boxes + 4 * k);
    for (int j = 0; j < cols; ++j) {
      const Track& t = slot(camera, cols_[j]);
      // From where it was last measured, at most kGapSpeed of its size per frame (a tentative track
      // only with a detection that could start one); sizes within 2x of each other.
      const double reach = kGapSpeed * 0.5 * (t.kalman.width() + t.kalman.height()) *
                           static_cast<double>(std::min<int64_t>(frame_id - t.last_frame, kMaxGap));
      const double distance = std::hypot(z[0] - t.mask_cx, z[1] - t.mask_cy);
      const bool sized = z[2] < 2 * t.kalman.width() && t.kalman.width() < 2 * z[2] && z[3] < 2 * t.kalman.height() &&
                         t.kalman.height() < 2 * z[3];
      // Only tracks matched at the camera's previous frame (a track lost longer is no longer where it was).
      const bool may = t.misses == 0 && (t.state != State::Tentative || d.scores[k] >= config_.high_score);
      cost_[static_cast<size_t>(i) * cols + j] = sized && may && reach > 0 ? distance / reach : 2.0;
    }
  }
  assignment_.solve(cost_.data(), rows, cols, 1.0, row_to_col_.data());
  for (int i = 0; i < rows; ++i) {
    if (row_to_col_[i] < 0) continue;
    Track& t = slot(camera, cols_[row_to_col_[i]]);
    const int32_t k = rows_[i];
    const BoxKalman::Vec4 z = measurement(d.boxes + 4 * k);
    const double frames = static_cast<double>(std::max<int64_t>(frame_id - t.last_frame, 1));
    t.kalman.restart(z, (z[0] - t.mask_cx) / frames, (z[1] - t.mask_cy) / frames);
    count_hit(t, camera, class_id, k, frame_id, events);
    class_ids[k] = t.id;
  }
}

void TrackTable::apply_match(Track& t, int32_t camera, int32_t class_id, int32_t k, const float* box, float score,
                             int64_t frame_id, std::vector<TrackEvent>& events) {
  t.kalman.update(measurement(box), measurement_noise_scale(score));
  count_hit(t, camera, class_id, k, frame_id, events);
}

// A matched detection: the track takes it, and a tentative track with enough hits is confirmed
// (track_started), a lost one found again.
void TrackTable::count_hit(Track& t, int32_t camera, int32_t class_id, int32_t k, int64_t frame_id,
                           std::vector<TrackEvent>& events) {
  take_detection(t, class_id, k, frame_id);
  ++t.hits;
  if (t.state == State::Tentative && t.hits >= config_.min_hits) {
    t.state = State::Confirmed;
    events.push_back(TrackEvent{TrackEventKind::Started, camera, class_id, t.id, t.first_frame, frame_id, t.hits});
  } else if (t.state == State::Lost) {
    t.state = State::Confirmed;
  }
}

void TrackTable::take_detection(Track& t, int32_t class_id, int32_t k, int64_t frame_id) {
  t.last_frame = frame_id;
  t.misses = 0;
  t.matched = true;
  t.source_class = class_id;  // the slot takes this detection's mask
  t.source_k = k;
  // Where the filter puts the object now: the mask is moved by the motion the filter predicts from
  // here (not from the measured box, which a low-score detection barely moves the filter towards).
  t.mask_cx = t.kalman.cx();
  t.mask_cy = t.kalman.cy();
}

void TrackTable::start_track(int32_t camera, int32_t class_id, int32_t k, const float* box, int64_t frame_id,
                             int64_t* ids, std::vector<TrackEvent>& events) {
  int32_t free_slot = -1, oldest_lost = -1;
  for (int32_t s = 0; s < config_.max_tracks && free_slot < 0; ++s) {
    const Track& t = slot(camera, s);
    if (t.state == State::Free) {
      free_slot = s;
    } else if (t.state == State::Lost) {
      const Track* o = oldest_lost < 0 ? nullptr : &slot(camera, oldest_lost);
      if (!o || t.misses > o->misses || (t.misses == o->misses && t.id < o->id)) oldest_lost = s;
    }
  }
  if (free_slot < 0 && oldest_lost >= 0) {
    end_track(slot(camera, oldest_lost), camera, events);  // a full pool gives up its oldest lost track
    free_slot = oldest_lost;
  }
  if (free_slot < 0) {
    ++refused_[camera];
    return;
  }
  Track& t = slot(camera, free_slot);
  t = Track{};
  t.state = config_.min_hits <= 1 ? State::Confirmed : State::Tentative;
  t.class_id = class_id;
  t.id = next_id_[camera]++;
  t.first_frame = frame_id;
  t.hits = 1;
  t.kalman.initiate(measurement(box));
  take_detection(t, class_id, k, frame_id);
  ids[static_cast<int64_t>(class_id) * config_.capacity + k] = t.id;
  if (t.state == State::Confirmed) {
    events.push_back(TrackEvent{TrackEventKind::Started, camera, class_id, t.id, frame_id, frame_id, 1});
  }
}

void TrackTable::end_track(Track& t, int32_t camera, std::vector<TrackEvent>& events) {
  if (t.state == State::Confirmed || t.state == State::Lost) {
    events.push_back(TrackEvent{TrackEventKind::Ended, camera, t.class_id, t.id, t.first_frame, t.last_frame, t.hits});
  }
  t = Track{};
}

void TrackTable::write_plan(SlotPlan* plan) {
  for (size_t i = 0; i < tracks_.size(); ++i) {
    Track& t = tracks_[i];
    const bool live = t.state != State::Free;
    plan[i] = SlotPlan{live ? t.class_id : -1, live ? t.source_class : -1, t.source_k, t.dx, t.dy};
    t.source_class = -1;  // each mask is copied once
  }
}

void TrackTable::finish(int32_t camera, std::vector<TrackEvent>& events) {
  require(camera >= -1 && camera < config_.max_cameras, [&] {
    return "camera " + std::to_string(camera) + " outside 0 .. " + std::to_string(config_.max_cameras - 1);
  });
  for (int32_t c = camera < 0 ? 0 : camera; c < (camera < 0 ? config_.max_cameras : camera + 1); ++c) {
    for (int32_t s = 0; s < config_.max_tracks; ++s) {
      if (slot(c, s).state != State::Free) end_track(slot(c, s), c, events);
    }
    last_frame_id_[c] = -1;  // its next frame starts afresh (a new source in the slot)
  }
}

void TrackTable::set_next_id(int32_t camera, int64_t next_id) {
  require(camera >= 0 && camera < config_.max_cameras, [&] {
    return "camera " + std::to_string(camera) + " outside 0 .. " + std::to_string(config_.max_cameras - 1);
  });
  require(next_id >= next_id_[camera], [&] {
    return "camera " + std::to_string(camera) + " has already used track ids up to " +
           std::to_string(next_id_[camera] - 1) + "; set_next_id(" + std::to_string(next_id) + ") would reuse them";
  });
  next_id_[camera] = next_id;
}

int32_t TrackTable::live(int32_t camera) const {
  int32_t n = 0;
  for (int32_t s = 0; s < config_.max_tracks; ++s) {
    n += tracks_[static_cast<size_t>(camera) * config_.max_tracks + s].state != State::Free;
  }
  return n;
}

int64_t TrackTable::host_bytes() const {
  return static_cast<int64_t>(tracks_.size() * sizeof(Track) + cost_.size() * sizeof(double) +
                              (rows_.capacity() + cols_.capacity() + row_to_col_.size()) * sizeof(int32_t)) +
         static_cast<int64_t>(config_.capacity + config_.max_tracks) * (config_.capacity + config_.max_tracks) *
             static_cast<int64_t>(sizeof(double));
}

}  // namespace segpost
