"""``course grade --scheduler``: a Dask cluster grades, ``course grade`` merges (a LocalCluster here)."""
from __future__ import annotations

import shutil

import pytest

from adversarial.cases import ASSIGNMENT, MAX
from grading_course import course, filled, grades, latest_report, make_course, submit

distributed = pytest.importorskip("distributed", reason="Dask is not installed: pip install 'dask[distributed]'")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed (make test installs it)")
def test_a_dask_cluster_grades_into_the_one_gradebook(tmp_path):
    folder = make_course(tmp_path / "course", [ASSIGNMENT])
    submit(folder, "alice", ASSIGNMENT, filled(ASSIGNMENT))
    wrong = "def attention(q, k, v, mask=None):\n    return q, q"
    submit(folder, "bob", ASSIGNMENT, filled(ASSIGNMENT, attention=wrong))
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  protocol="tcp://", host="127.0.0.1", dashboard_address=None) as cluster:
        done = course(folder, "grade", ASSIGNMENT, "--scheduler", cluster.scheduler_address, "--timeout", "20")
    assert done.returncode == 0, done.stdout + done.stderr
    totals = {name: sum(cells.values()) for name, cells in grades(folder, ASSIGNMENT).items()}
    assert totals == {"alice": MAX, "bob": MAX - 3}
    assert {row["status"] for row in latest_report(folder).values()} == {"ok"}
    assert (folder / "feedback" / "bob" / ASSIGNMENT / f"{ASSIGNMENT}.html").exists()
