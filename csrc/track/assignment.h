// Minimum-cost assignment with a cost limit, as ByteTrack uses lapjv's: a row or a column may
// stay unmatched at cost limit / 2, so a pair is matched only when that beats leaving both out.
#pragma once

#include <vector>

namespace segpost {

class Assignment {
 public:
  // Scratch for problems up to max_rows x max_cols, allocated here once.
  Assignment(int max_rows, int max_cols);

  // cost: rows x cols, row-major; pairs with cost > limit never match. row_to_col[i]: the
  // column of row i, or -1.
  void solve(const double* cost, int rows, int cols, double limit, int* row_to_col);

 private:
  void hungarian(int n);  // on the n x n matrix in square_, result in column_row_

  std::vector<int> live_rows_, live_cols_;
  std::vector<double> square_, u_, v_, min_slack_;
  std::vector<int> column_row_, way_;
  std::vector<char> used_;
};

}  // namespace segpost
