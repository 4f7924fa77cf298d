"""Peak GPU memory (nvidia-smi polled in the background), the GPU's bf16 peak, and FLOPs per token for MFU."""

from __future__ import annotations

import shutil
import subprocess
import threading

# Dense bf16 peak TFLOP/s by GPU name (first match); --peak-tflops overrides.
PEAK_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("H800", 989.0), ("GH200", 989.0),
               ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0),
               ("RTX 4090", 165.0), ("A10", 125.0)]


def gpu_info() -> dict | None:
    """Name and total memory (MiB) of GPU 0, or None without nvidia-smi / a GPU."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30, check=True).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    name, total, driver = (part.strip() for part in out[0].split(","))
    peak = next((tflops for key, tflops in PEAK_TFLOPS if key in name), None)
    return {"name": name, "memory_mib": float(total), "driver": driver, "count": len(out), "peak_tflops": peak}


class MemoryPoller:
    """``nvidia-smi -lms 250`` in the background; ``peak_mib`` is the largest memory.used seen on any GPU."""

    def __init__(self, interval_ms: int = 250):
        self.interval_ms = interval_ms
        self.peak_mib: float | None = None
        self.proc = None
        self.thread = None

    def __enter__(self):
        smi = shutil.which("nvidia-smi")
        if smi:
            self.proc = subprocess.Popen([smi, "--query-gpu=memory.used", "--format=csv,noheader,nounits",
                                          f"-lms={self.interval_ms}"], stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, text=True)
            self.thread = threading.Thread(target=self._read, daemon=True)
            self.thread.start()
        return self

    def _read(self):
        for line in self.proc.stdout:
            try:
                value = float(line.strip())
            except ValueError:
                continue
            self.peak_mib = value if self.peak_mib is None else max(self.peak_mib, value)

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.thread is not None:
            self.thread.join(timeout=5)


def flops(shape, method: str, tokens: float, sumsq: float) -> float:
    """Training FLOPs for ``tokens`` real tokens whose documents' squared lengths sum to ``sumsq``.

    Per token: 6·N (full) or 4·N (LoRA: no weight gradients for the frozen weights) + 12·L·H·d·T, with T the
    length of the document the token belongs to (so the attention term sums T² over documents). Recomputation by
    gradient checkpointing is not counted: MFU credits only the work the model needs. N counts the parameters a
    token runs through: a MoE model's routed experts only (``Shape.active_params``).
    """
    n = shape.active_params
    per_param = 6 if method == "full" else 4
    return per_param * n * tokens + 12 * shape.layers * shape.heads * shape.head_dim * sumsq
