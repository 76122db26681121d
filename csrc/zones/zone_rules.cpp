#include "zone_rules.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace segpost {

ZoneRules::ZoneRules(ZoneRulesConfig config) : c_(std::move(config)) {
  const size_t n = static_cast<size_t>(c_.cameras) * c_.slots;
  if (c_.slots < 1 || c_.valid.size() != n || c_.is_line.size() != n || c_.col.size() != n || c_.col2.size() != n ||
      c_.min_overlap.size() != n || c_.inertia.size() != n || c_.dwell.size() != n) {
    throw std::invalid_argument("ZoneRules: tables must be [cameras * slots]");
  }
  confirmed_.resize(c_.cameras);
}

int ZoneRules::add_class(const std::vector<uint8_t>& allowed) {
  if (allowed.size() != static_cast<size_t>(c_.cameras) * c_.slots) {
    throw std::invalid_argument("ZoneRules.add_class: table must be [cameras * slots]");
  }
  allowed_.push_back(allowed);
  return num_classes() - 1;
}

int32_t ZoneRules::row(const Key& key) {
  auto it = rows_.find(key);
  if (it != rows_.end()) return it->second.index;
  if (free_.empty()) {
    const size_t old = last_frame_.size(), grow = std::max<size_t>(64, old), s = c_.slots;
    const size_t rows = old + grow;
    state_.resize(rows * s, 0);
    pending_.resize(rows * s, 0);
    streak_.resize(rows * s, 0);
    streak_frame_.resize(rows * s, 0);
    streak_time_.resize(rows * s, 0.0);
    since_time_.resize(rows * s, 0.0);
    dwelled_.resize(rows * s, 0);
    last_frame_.resize(rows, 0);
    last_time_.resize(rows, 0.0);
    for (size_t r = rows; r-- > old;) free_.push_back(static_cast<int32_t>(r));
  }
  const int32_t r = free_.back();
  free_.pop_back();
  rows_.emplace(key, Row{r, seq_++});
  return r;
}

void ZoneRules::check_camera(int camera, const char* where) const {
  if (camera < 0 || camera >= c_.cameras) throw std::out_of_range(std::string(where) + ": camera");
}

void ZoneRules::update(int camera, int64_t frame, double time, int n, const int32_t* cls, const int64_t* track,
                       const float* shares, int columns, bool confirmed_only) {
  check_camera(camera, "ZoneRules.update");
  for (int d = 0; d < n; ++d) {
    if (!counted(camera, track[d], confirmed_only)) continue;
    update_one(camera, frame, time, cls[d], track[d], shares + static_cast<size_t>(d) * columns, columns);
  }
}

void ZoneRules::update_batch(int frames, const int32_t* camera, const int64_t* frame, const double* time, int classes,
                             const int32_t* klass, const int32_t* counts, const int64_t* tracks, int track_stride,
                             const float* shares, int share_rows, int columns, bool confirmed_only) {
  std::vector<int32_t>& start = batch_start_;   // kept: a round allocates nothing once it has grown
  start.assign(classes, 0);
  for (int f = 0; f < frames; ++f) {
    if (camera[f] >= 0) check_camera(camera[f], "ZoneRules.update_batch");
    for (int k = 0; k < classes; ++k) {
      const int n = counts[static_cast<size_t>(k) * frames + f];
      if (n < 0 || start[k] + n > std::min(track_stride, share_rows)) {
        throw std::out_of_range("ZoneRules.update_batch: a class's counts overrun its rows");
      }
      if (camera[f] >= 0) {
        const int64_t* ids = tracks + static_cast<size_t>(k) * track_stride;
        for (int row = start[k]; row < start[k] + n; ++row) {
          if (!counted(camera[f], ids[row], confirmed_only)) continue;
          update_one(camera[f], frame[f], time[f], klass[k], ids[row],
                     shares + (static_cast<size_t>(k) * share_rows + row) * columns, columns);
        }
      }
      start[k] += n;
    }
  }
}

void ZoneRules::confirm(int camera, int64_t track) {
  check_camera(camera, "ZoneRules.confirm");
  confirmed_[camera].insert(track);
}

void ZoneRules::update_one(int camera, int64_t frame, double time, int32_t cls, int64_t track, const float* shares,
                           int columns) {
  if (cls < 0 || cls >= num_classes()) throw std::out_of_range("ZoneRules.update: class");
  const int s = c_.slots;
  const size_t base = static_cast<size_t>(camera) * s;
  auto share = [&](int column) { return column < columns ? shares[column] : 0.f; };
  const int32_t r = row(Key{camera, cls, track});
  const uint8_t* allowed = allowed_[cls].data() + base;
  const size_t at = static_cast<size_t>(r) * s;
  for (int z = 0; z < s; ++z) {
    const size_t k = base + z, i = at + z;
    if (!allowed[z]) continue;  // no evidence: the state is untouched
    const float first = share(c_.col[k]);
    int8_t raw;
    if (c_.is_line[k]) {
      const float second = share(c_.col2[k]);
      // The side with the larger share, when enough of the mask lies within the span.
      if (!(first + second >= c_.min_overlap[k] && first != second)) continue;
      raw = first > second ? 1 : -1;
    } else {
      raw = first >= c_.min_overlap[k] ? 1 : 0;
    }
    if (raw == state_[i]) {
      streak_[i] = 0;
    } else {
      if (streak_[i] > 0 && raw == pending_[i]) {
        streak_[i] += 1;
      } else {
        streak_[i] = 1;
        pending_[i] = raw;
        streak_frame_[i] = frame;
        streak_time_[i] = time;
      }
      if (streak_[i] >= c_.inertia[k]) {
        streak_[i] = 0;
        const int8_t was = state_[i];
        state_[i] = raw;
        if (c_.is_line[k]) {
          if (was != 0) flips_.push_back({kLineCrossed, camera, z, cls, track, raw, streak_frame_[i], streak_time_[i], 0.0});
        } else {
          since_time_[i] = streak_time_[i];
          dwelled_[i] = 0;
          flips_.push_back({kZoneFlip, camera, z, cls, track, raw, streak_frame_[i], streak_time_[i], 0.0});
        }
      }
    }
    // Dwell only on a frame seen inside: a pending exit may still date the stay's end before now.
    if (!c_.is_line[k] && raw == 1 && state_[i] == 1 && !dwelled_[i]) {
      const double stayed = time - since_time_[i];
      if (stayed >= c_.dwell[k] - 1e-9) {  // times are sums of frame steps: allow rounding
        dwelled_[i] = 1;
        dwells_.push_back({kZoneDwell, camera, z, cls, track, 1, frame, time, stayed});
      }
    }
  }
  last_frame_[r] = frame;
  last_time_[r] = time;
}

std::vector<ZoneRuleEvent> ZoneRules::take_events() {
  std::vector<ZoneRuleEvent> out;
  out.reserve(flips_.size() + dwells_.size());
  out.insert(out.end(), flips_.begin(), flips_.end());
  out.insert(out.end(), dwells_.begin(), dwells_.end());
  flips_.clear();
  dwells_.clear();
  return out;
}

std::vector<ZoneRuleEvent> ZoneRules::end_track(int camera, int64_t track) {
  check_camera(camera, "ZoneRules.end_track");
  confirmed_[camera].erase(track);
  std::vector<std::pair<uint64_t, Key>> found;
  for (const auto& [key, row] : rows_) {
    if (key.camera == camera && key.track == track) found.emplace_back(row.seq, key);
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<ZoneRuleEvent> out;
  const int s = c_.slots;
  const size_t base = static_cast<size_t>(camera) * s;
  for (const auto& [seq, key] : found) {
    const int32_t r = rows_.at(key).index;
    rows_.erase(key);
    const size_t at = static_cast<size_t>(r) * s;
    for (int z = 0; z < s; ++z) {
      if (c_.valid[base + z] && !c_.is_line[base + z] && state_[at + z] == 1) {
        out.push_back({kZoneEnded, camera, z, key.cls, key.track, 0, last_frame_[r], last_time_[r], 0.0});
      }
      state_[at + z] = pending_[at + z] = 0;
      streak_[at + z] = 0;
      dwelled_[at + z] = 0;
    }
    free_.push_back(r);
  }
  return out;
}

std::vector<std::pair<int32_t, int64_t>> ZoneRules::live_tracks() const {
  std::vector<std::pair<int32_t, int64_t>> out;
  for (const auto& [key, row] : rows_) out.emplace_back(key.camera, key.track);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace segpost
