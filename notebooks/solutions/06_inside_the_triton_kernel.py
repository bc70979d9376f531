"""Solution of the exercise in 06_inside_the_triton_kernel.ipynb: bytes moved by one step.

Run it from the repository root: ``python notebooks/solutions/06_inside_the_triton_kernel.py``.
"""

from mbviz.course import check_bytes_moved

T = 4
N = 2048 * 256  # elements of Z, and of every task's gradient dL_t/dZ
s = 2  # bytes per bfloat16 element

# Pass 1 reads every gradient once (T*N), pass 2 reads them again (T*N) and writes the
# combined gradient once (N): (2T + 1) * N elements.
my_bytes = (2 * T + 1) * N * s
print(f"{my_bytes:,} bytes = {my_bytes / 2**20:.1f} MiB")

# Bonus: at 3 TB/s that is my_bytes / 3e12 seconds.
print(f"about {my_bytes / 3e12 * 1e6:.1f} microseconds at 3 TB/s")

assert check_bytes_moved(my_bytes, num_tasks=T, numel=N, dtype="bfloat16")
