"""Evidently 0.7.23 in a virtual environment of its own, and a way to run a script inside it.

prodloop's drift tests are checked against Evidently (``benchmarks/record_evidently.py`` records
its verdicts for the parity tests; ``benchmarks/drift.py`` times it). Evidently is not a dependency
of prodloop: it lives in ``benchmarks/.venv-evidently`` (git-ignored), made on first use:

    .venv/bin/python benchmarks/evidently_env.py                 # make it (once) and print versions
    .venv/bin/python benchmarks/evidently_env.py SCRIPT [ARGS]   # run SCRIPT with Evidently's Python

Evidently 0.7.23 does not import with pandas 3 (it imports ``infer_dtype_from_object``, which
pandas 3 removed), so the environment pins ``pandas<3``; pyarrow reads the benchmark's Parquet.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / "benchmarks" / ".venv-evidently"
PYTHON = VENV / "bin" / "python"
EVIDENTLY_VERSION = "0.7.23"
REQUIREMENTS = [f"evidently=={EVIDENTLY_VERSION}", "pandas<3", "pyarrow", "scikit-learn"]
_PROBE = "import evidently, numpy, pandas, scipy, sklearn; print(evidently.__version__)"


def _base_python() -> str:
    """A Python 3.11 to make the environment with: this one when it is 3.11, else python3.11."""
    if sys.version_info[:2] == (3, 11):
        return sys.executable
    found = shutil.which("python3.11")
    if found is None:
        raise SystemExit("Evidently's environment needs Python 3.11 (python3.11 not found)")
    return found


def installed_version() -> str | None:
    """Evidently's version in the environment, or None when it is not usable yet."""
    if not PYTHON.exists():
        return None
    probe = subprocess.run([str(PYTHON), "-c", _PROBE], capture_output=True, text=True, timeout=300)
    return probe.stdout.strip() if probe.returncode == 0 else None


def ensure() -> Path:
    """Makes the environment when it is missing or holds another Evidently; returns its Python."""
    if installed_version() == EVIDENTLY_VERSION:
        return PYTHON
    print(f"installing evidently=={EVIDENTLY_VERSION} into {VENV} (a few minutes, once)", file=sys.stderr)
    if not PYTHON.exists():
        subprocess.run([_base_python(), "-m", "venv", str(VENV)], check=True, timeout=300)
    pip = [str(PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, *REQUIREMENTS], check=True, timeout=1800)
    version = installed_version()
    if version != EVIDENTLY_VERSION:
        raise SystemExit(f"Evidently's environment is not usable (found {version!r})")
    return PYTHON


def run(script: str | Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Runs ``script`` with Evidently's Python (made first if needed); stdout is captured, stderr
    passes through. Raises CalledProcessError when the script fails."""
    python = ensure()
    return subprocess.run(
        [str(python), "-W", "ignore", str(script), *args],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def versions() -> str:
    """Versions of Evidently and of the libraries its statistics come from, in its environment."""
    python = ensure()
    code = (
        "import evidently, numpy, pandas, scipy, sklearn, statsmodels; "
        "print(f'evidently {evidently.__version__}, numpy {numpy.__version__}, pandas {pandas.__version__}, "
        "scipy {scipy.__version__}, scikit-learn {sklearn.__version__}, "
        "statsmodels {statsmodels.__version__}')"
    )
    return subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def main(argv: list[str]) -> int:
    if not argv:
        print(versions())
        return 0
    python = ensure()
    return subprocess.run([str(python), *argv], cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
