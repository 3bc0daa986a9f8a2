"""What the benchmark tables say about the machine they ran on."""

import platform


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what platform knows elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
