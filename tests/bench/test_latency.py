"""The latency runner's clock: wall time by default, any clock on request (the calling thread's CPU time leaves out
what other processes take from a busy machine)."""

import itertools
import time

from repvit.bench.latency import interleaved_latency, time_callable


def test_time_callable_reads_the_given_clock():
    ticks = itertools.count(step=0.25)  # each read of the clock is 250 ms after the previous one
    assert time_callable(lambda: None, iters=3, warmup=1, clock=lambda: next(ticks)) == [250.0, 250.0, 250.0]


def test_thread_cpu_time_leaves_out_waiting():
    def wait():
        time.sleep(0.05)

    res = interleaved_latency({"wall": wait}, rounds=2, iters_per_round=1, warmup=0, threads=1)
    cpu = interleaved_latency({"cpu": wait}, rounds=2, iters_per_round=1, warmup=0, threads=1, clock=time.thread_time)
    assert res["wall"].min_ms >= 45 and cpu["cpu"].median_ms < 10
