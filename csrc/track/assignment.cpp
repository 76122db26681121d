#include "assignment.h"

#include <cstddef>
#include <limits>

namespace segpost {
namespace {
// Cost of a pair that must not match: above any real cost (<= 1 + limit) by far, and finite,
// so the solver's potentials stay finite.
constexpr double kInfeasible = 1e6;
}  // namespace

Assignment::Assignment(int max_rows, int max_cols) {
  const size_t n = static_cast<size_t>(max_rows) + max_cols;
  live_rows_.reserve(max_rows);
  live_cols_.reserve(max_cols);
  square_.resize(n * n);
  u_.resize(n + 1);
  v_.resize(n + 1);
  min_slack_.resize(n + 1);
  column_row_.resize(n + 1);
  way_.resize(n + 1);
  used_.resize(n + 1);
}

void Assignment::solve(const double* cost, int rows, int cols, double limit, int* row_to_col) {
  for (int i = 0; i < rows; ++i) row_to_col[i] = -1;
  // Rows and columns without a feasible pair stay unmatched whatever the rest does: leave them out.
  live_rows_.clear();
  live_cols_.clear();
  std::vector<char>& col_live = used_;  // scratch reuse: cleared again by hungarian()
  for (int j = 0; j < cols; ++j) col_live[j] = 0;
  for (int i = 0; i < rows; ++i) {
    bool any = false;
    for (int j = 0; j < cols; ++j) {
      if (cost[i * cols + j] <= limit) {
        any = true;
        col_live[j] = 1;
      }
    }
    if (any) live_rows_.push_back(i);
  }
  for (int j = 0; j < cols; ++j)
    if (col_live[j]) live_cols_.push_back(j);
  const int r = static_cast<int>(live_rows_.size()), c = static_cast<int>(live_cols_.size());
  if (r == 0) return;
  // The square problem: [pairs, row left out; column left out, 0].
  const int n = r + c;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      double value;
      if (i < r && j < c) {
        const double pair = cost[live_rows_[i] * cols + live_cols_[j]];
        value = pair <= limit ? pair : kInfeasible;
      } else {
        value = (i < r || j < c) ? limit / 2 : 0.0;
      }
      square_[static_cast<size_t>(i) * n + j] = value;
    }
  }
  hungarian(n);
  for (int j = 1; j <= c; ++j) {
    const int i = column_row_[j] - 1;
    if (i < r && cost[live_rows_[i] * cols + live_cols_[j - 1]] <= limit) row_to_col[live_rows_[i]] = live_cols_[j - 1];
  }
}

// The shortest augmenting path Hungarian algorithm, O(n^3), 1-based with column 0 as the root.
void Assignment::hungarian(int n) {
  const double inf = std::numeric_limits<double>::infinity();
  for (int j = 0; j <= n; ++j) {
    u_[j] = v_[j] = 0.0;
    column_row_[j] = 0;
    way_[j] = 0;
  }
  for (int i = 1; i <= n; ++i) {
    column_row_[0] = i;
    int j0 = 0;
    for (int j = 0; j <= n; ++j) {
      min_slack_[j] = inf;
      used_[j] = 0;
    }
    do {
      used_[j0] = 1;
      const int i0 = column_row_[j0];
      double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= n; ++j) {
        if (used_[j]) continue;
        const double slack = square_[static_cast<size_t>(i0 - 1) * n + (j - 1)] - u_[i0] - v_[j];
        if (slack < min_slack_[j]) {
          min_slack_[j] = slack;
          way_[j] = j0;
        }
        if (min_slack_[j] < delta) {
          delta = min_slack_[j];
          j1 = j;
        }
      }
      for (int j = 0; j <= n; ++j) {
        if (used_[j]) {
          u_[column_row_[j]] += delta;
          v_[j] -= delta;
        } else {
          min_slack_[j] -= delta;
        }
      }
      j0 = j1;
    } while (column_row_[j0] != 0);
    do {
      const int j1 = way_[j0];
      column_row_[j0] = column_row_[j1];
      j0 = j1;
    } while (j0);
  }
}

}  // namespace segpost
