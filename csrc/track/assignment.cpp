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
  component_.resize(n);
  queue_.resize(n);
  rows_.reserve(max_rows);
  cols_.reserve(max_cols);
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
  // The pairs that may match split rows and columns into groups that share no pair: the optimum is
  // each group's optimum, and most groups are one row and one column (objects apart from each other).
  // Nodes: rows 0 .. rows-1, then columns rows .. rows+cols-1; component_ -1: not reached yet.
  const int nodes = rows + cols;
  for (int i = 0; i < nodes; ++i) component_[i] = -1;
  auto feasible = [&](int i, int j) { return cost[i * cols + j] <= limit; };
  for (int start = 0; start < rows; ++start) {
    if (component_[start] >= 0) continue;
    int head = 0, tail = 0;
    queue_[tail++] = start;
    component_[start] = start;
    while (head < tail) {
      const int node = queue_[head++];
      if (node < rows) {
        for (int j = 0; j < cols; ++j)
          if (component_[rows + j] < 0 && feasible(node, j)) component_[queue_[tail++] = rows + j] = start;
      } else {
        for (int i = 0; i < rows; ++i)
          if (component_[i] < 0 && feasible(i, node - rows)) component_[queue_[tail++] = i] = start;
      }
    }
    if (tail == 1) continue;  // a row without any feasible pair
    rows_.clear();
    cols_.clear();
    for (int q = 0; q < tail; ++q) {
      if (queue_[q] < rows) {
        rows_.push_back(queue_[q]);
      } else {
        cols_.push_back(queue_[q] - rows);
      }
    }
    if (rows_.size() == 1 && cols_.size() == 1) {
      row_to_col[rows_[0]] = cols_[0];
      continue;
    }
    solve_group(cost, cols, limit, row_to_col);
  }
}

// One group: the square problem [pairs, row left out; column left out, 0] (lapjv's extension).
void Assignment::solve_group(const double* cost, int cols, double limit, int* row_to_col) {
  const int r = static_cast<int>(rows_.size()), c = static_cast<int>(cols_.size()), n = r + c;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      double value;
      if (i < r && j < c) {
        const double pair = cost[rows_[i] * cols + cols_[j]];
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
    if (i < r && cost[rows_[i] * cols + cols_[j - 1]] <= limit) row_to_col[rows_[i]] = cols_[j - 1];
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
