"""Statistics for leaderboards and regression gates: pure numpy/pandas, no Ray."""
