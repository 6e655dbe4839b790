import subprocess
import sys


def test_import_does_no_work():
    code = "import sys, linrep; bad = [m for m in ('torch', 'matplotlib', 'transformers', 'ray') if m in sys.modules]; print(bad)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
