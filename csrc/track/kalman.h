// The box motion model: a constant-velocity Kalman filter on (cx, cy, w, h) in pixels, as
// BoT-SORT's xywh filter (ByteTrack's xyah one estimates the aspect ratio instead of the width,
// which couples width to height: a person who turns or a bar that rotates changes one but not the
// other). Noise scales with the box size (ByteTrack's and BoT-SORT's weights 1/20 and 1/160), and
// a measurement's noise with its detection's score (measurement_noise_scale).
#pragma once

#include <array>
#include <cmath>
#include <utility>

namespace segpost {

// How much a detection's box is trusted, as a factor on the measurement noise's standard
// deviation: 1 / score^2. A low score is mostly an object partly hidden or partly out of the
// frame, whose box is that of its visible part: it barely moves the state, so neither the size nor
// the velocity collapses to a sliver's, and the object is looked for where it really goes (0.9:
// x1.2, 0.5: x4, 0.2: x25). Scores are bounded below so that the noise stays finite.
inline double measurement_noise_scale(float score) {
  const double s = std::fmax(static_cast<double>(score), 0.01);
  return 1.0 / (s * s);
}

class BoxKalman {
 public:
  using Vec4 = std::array<double, 4>;
  using Vec8 = std::array<double, 8>;

  // A new track at a measured box (cx, cy, w, h), at rest.
  void initiate(const Vec4& z) {
    mean_ = {z[0], z[1], z[2], z[3], 0, 0, 0, 0};
    measured_w_ = z[2];
    measured_h_ = z[3];
    const Vec8 std_dev = {2 * kPosition * z[2], 2 * kPosition * z[3], 2 * kPosition * z[2], 2 * kPosition * z[3],
                          10 * kVelocity * z[2], 10 * kVelocity * z[3], 10 * kVelocity * z[2], 10 * kVelocity * z[3]};
    for (auto& row : cov_) row.fill(0.0);
    for (int i = 0; i < 8; ++i) cov_[i][i] = std_dev[i] * std_dev[i];
  }

  // A track found again far from its prediction (frames were skipped): restart it at the measured
  // box, moving at the given velocity (pixels per frame, from its last two positions).
  void restart(const Vec4& z, double vx, double vy) {
    initiate(z);
    mean_[4] = vx;
    mean_[5] = vy;
  }

  // One frame ahead. `hold_size`: a track that is not matched keeps its size (its width and
  // height velocities are zeroed, as BoT-SORT does for lost tracks) so a long gap cannot shrink it to nothing.
  void predict(bool hold_size) {
    if (hold_size) mean_[6] = mean_[7] = 0;
    const double w = mean_[2], h = mean_[3];
    const Vec8 q = {kPosition * w, kPosition * h, kPosition * w, kPosition * h,
                    kVelocity * w, kVelocity * h, kVelocity * w, kVelocity * h};
    for (int i = 0; i < 4; ++i) mean_[i] += mean_[i + 4];
    // P = F P F^T + Q with F = [[I, I], [0, I]]: rows then columns of the top half gain the bottom half.
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 8; ++j) cov_[i][j] += cov_[i + 4][j];
    for (int j = 0; j < 4; ++j)
      for (int i = 0; i < 8; ++i) cov_[i][j] += cov_[i][j + 4];
    for (int i = 0; i < 8; ++i) cov_[i][i] += q[i] * q[i];
    // A size extrapolated below kLeastShrink of the last measured one stops there: constant velocity
    // takes a bar turning through upright to no width at all, and a box of no width matches nothing.
    if (mean_[2] < kLeastShrink * measured_w_) {
      mean_[2] = kLeastShrink * measured_w_;
      mean_[6] = std::fmax(mean_[6], 0.0);
    }
    if (mean_[3] < kLeastShrink * measured_h_) {
      mean_[3] = kLeastShrink * measured_h_;
      mean_[7] = std::fmax(mean_[7], 0.0);
    }
    keep_positive_size();
  }

  // Folds in a measured box (cx, cy, w, h) whose noise is `noise_scale` times the usual.
  void update(const Vec4& z, double noise_scale) {
    const double w = noise_scale * mean_[2], h = noise_scale * mean_[3];
    const Vec4 r = {kPosition * w, kPosition * h, kPosition * w, kPosition * h};
    // S = H P H^T + R (the top-left 4x4 of P plus R); K = P H^T S^-1 (8x4).
    double s[4][4];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) s[i][j] = cov_[i][j] + (i == j ? r[i] * r[i] : 0.0);
    double s_inv[4][4];
    invert4(s, s_inv);
    double gain[8][4];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) {
        double v = 0;
        for (int m = 0; m < 4; ++m) v += cov_[i][m] * s_inv[m][j];
        gain[i][j] = v;
      }
    measured_w_ = z[2];
    measured_h_ = z[3];
    Vec4 innovation;
    for (int i = 0; i < 4; ++i) innovation[i] = z[i] - mean_[i];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 4; ++j) mean_[i] += gain[i][j] * innovation[j];
    // P -= K S K^T = K (H P): row i of H P is row i of P's top half.
    double top[4][8];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 8; ++j) top[i][j] = cov_[i][j];
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) {
        double v = 0;
        for (int m = 0; m < 4; ++m) v += gain[i][m] * top[m][j];
        cov_[i][j] -= v;
      }
    keep_positive_size();
  }

  // Keeps the centre inside a width x height frame, stopping the velocity that points out of it: an
  // object cannot be seen outside the frame, and one that left comes back through the edge it left by.
  void keep_centre_inside(double width, double height) {
    const double limit[2] = {width, height};
    for (int i = 0; i < 2; ++i) {
      if (mean_[i] < 0) {
        mean_[i] = 0;
        mean_[i + 4] = std::fmax(mean_[i + 4], 0.0);
      } else if (mean_[i] > limit[i]) {
        mean_[i] = limit[i];
        mean_[i + 4] = std::fmin(mean_[i + 4], 0.0);
      }
    }
  }

  double cx() const { return mean_[0]; }
  double cy() const { return mean_[1]; }
  double width() const { return mean_[2]; }
  double height() const { return mean_[3]; }
  double vx() const { return mean_[4]; }
  double vy() const { return mean_[5]; }

 private:
  static constexpr double kPosition = 1.0 / 20, kVelocity = 1.0 / 160;
  static constexpr double kLeastShrink = 0.7;  // of the last measured size, per prediction

  void keep_positive_size() {
    mean_[2] = std::fmax(mean_[2], 1.0);
    mean_[3] = std::fmax(mean_[3], 1.0);
  }

  // Gauss-Jordan with partial pivoting; S is symmetric positive definite (P's block plus R > 0).
  static void invert4(const double (&a)[4][4], double (&out)[4][4]) {
    double m[4][8];
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 8; ++j) m[i][j] = j < 4 ? a[i][j] : (j - 4 == i ? 1.0 : 0.0);
    for (int c = 0; c < 4; ++c) {
      int pivot = c;
      for (int i = c + 1; i < 4; ++i)
        if (std::fabs(m[i][c]) > std::fabs(m[pivot][c])) pivot = i;
      if (pivot != c)
        for (int j = 0; j < 8; ++j) std::swap(m[c][j], m[pivot][j]);
      const double d = m[c][c];
      for (int j = 0; j < 8; ++j) m[c][j] /= d;
      for (int i = 0; i < 4; ++i) {
        if (i == c) continue;
        const double f = m[i][c];
        for (int j = 0; j < 8; ++j) m[i][j] -= f * m[c][j];
      }
    }
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j) out[i][j] = m[i][j + 4];
  }

  Vec8 mean_{};
  double measured_w_ = 1, measured_h_ = 1;  // the last measured box's size
  std::array<std::array<double, 8>, 8> cov_{};
};

}  // namespace segpost
