"""Benchmarking: complexity (params/MACs), latency and throughput runners, plots."""
