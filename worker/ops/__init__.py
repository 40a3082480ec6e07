"""What a running worker reports: counters, Prometheus metrics, health records, status and logs."""
