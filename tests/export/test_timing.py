"""The benches' clock: CPU time of the calling thread beside wall time, and the CPU flags every bench prints."""

import time

from earmark.export.timing import INT8_FLAGS, cpu_flags, describe_cpu, interleaved

X86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd asimddp crc32\n"


def test_cpu_flags_reads_x86_flags_and_arm_features():
    assert cpu_flags(X86) == {"avx2": True, "avx512_vnni": True, "avx_vnni": False, "amx_int8": False, "asimddp": False}
    assert [flag for flag, has in cpu_flags(ARM).items() if has] == ["asimddp"]
    assert not any(cpu_flags("").values())


def test_describe_cpu_names_every_int8_flag_as_present_or_absent():
    line = describe_cpu()
    assert all(flag in line for flag in INT8_FLAGS) and "cores" in line


def test_interleaved_counts_cpu_time_not_the_time_a_call_waits():
    calls = {"sleeps": lambda: time.sleep(0.02), "computes": lambda: sum(range(200_000))}
    timings = interleaved(calls, runs=3)
    assert set(timings) == set(calls) and all(len(t.cpu_ms) == len(t.wall_ms) == 3 for t in timings.values())
    assert timings["sleeps"].wall_p50 >= 20 and timings["sleeps"].cpu_p50 < 5  # waiting costs wall time, not CPU
    assert timings["computes"].cpu_p50 > 0
