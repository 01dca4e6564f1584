"""The README's first command, as a user runs it: `python3 scripts/demo.py`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.conftest import isolated_sys_dir

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_lands_sandbox_data_in_the_embedded_warehouse_and_prints_a_summary(meltano_bin, tmp_path):
    # Its own directory (not pytest's tmp_path: as root the embedded server's user must
    # traverse the parents, which pytest keeps closed); its own Meltano state.
    demo_dir = Path(tempfile.mkdtemp(prefix="tap-exactonline-demo-"))
    env = {"MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
           "MELTANO_SYS_DIR_ROOT": str(isolated_sys_dir(tmp_path))}
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "demo.py"), "--dir", str(demo_dir)],
            cwd=ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
            env={**os.environ, **env},
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-5000:]
        # The summary: one line per table with its row count, then the totals.
        rows = dict(re.findall(r"^exactonline\.(\w+)\s+([\d,]+)", proc.stdout, flags=re.M))
        assert {"accounts", "gl_accounts", "transaction_lines"} <= set(rows), proc.stdout[-3000:]
        core = ("accounts", "gl_accounts", "transaction_lines", "contacts", "items")
        assert all(int(rows[t].replace(",", "")) > 0 for t in core if t in rows), rows
        assert re.search(r"^\d+ tables\s+[\d,]+$", proc.stdout, flags=re.M), proc.stdout[-2000:]
        assert "total" in proc.stdout
        # The transform ran and its statements were printed; the balance sheet balances.
        assert re.search(r"^Profit and loss, division 101, financial year \d{4}", proc.stdout, flags=re.M), \
            proc.stdout[-3000:]
        totals = re.findall(r"^  Total (?:assets|liabilities, equity and result)\s+(-?[\d,]+\.\d\d)$", proc.stdout, flags=re.M)
        assert len(totals) == 2 and totals[0] == totals[1] and totals[0] != "0.00", totals
        # The README shows these statements as the demo prints them.
        printed = re.search(r"^Profit and loss.*?^  Total liabilities, equity and result .*?$", proc.stdout,
                            flags=re.M | re.S).group(0)
        assert printed in (ROOT / "README.md").read_text(), "README's statements differ from the demo's:\n" + printed
        # Both servers are stopped afterwards.
        assert not (demo_dir / "pgdata" / "postmaster.pid").exists()
    finally:
        shutil.rmtree(demo_dir, ignore_errors=True)
