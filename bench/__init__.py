"""cloudsync's benchmarks (`make bench`): full resync against a COPY pipe and dlt on the same data."""
