"""Latency and throughput benchmarks, reported the way trtexec reports them."""
