import subprocess
import sys


def test_import_is_light_and_starts_nothing():
    code = (
        "import sys, threading, focusface; "
        "heavy = [m for m in ('torch', 'numpy', 'cv2', 'matplotlib', 'sklearn') if m in sys.modules]; "
        "print(heavy, threading.active_count())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] 1", f"import focusface pulled in heavy modules or started threads: {out}"


def test_cli_entry_point_lists_backbones():
    out = subprocess.run([sys.executable, "-m", "focusface.cli", "backbones"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("tiny", "r18", "r50", "r100", "r200"):
        assert name in out.stdout
